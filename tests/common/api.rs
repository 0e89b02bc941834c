//! A client for the HTTP API of a [`Server`]: requests with an optional bearer token and an
//! optional JSON body, answers as status and JSON, and the one error shape every endpoint shares.
//!
//! Test files add what only they need (a CSV upload, a walk over pages, an `Idempotency-Key`) as
//! small functions on top of [`Api::request`] and [`Api::read`].

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Server;

/// How long one request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api {
            base: format!("http://{}", server.http),
            client: reqwest::Client::builder()
                // A fresh connection per request: a server restarted on the same port or a
                // connection the server closed never fails the next request.
                .pool_max_idle_per_host(0)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap(),
        }
    }

    /// A request to `path` (`/api/v1/...`), with the token as `Authorization: Bearer` if given;
    /// for requests that need more than [`Api::raw`] sends (another content type, headers).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request; `body` goes as `application/json`, as is (malformed bodies included).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.request(method.clone(), path, token);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Status and JSON body (`null` when the body is empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        Api::read(self.raw(method, path, token, body).await).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, token, None).await
    }

    /// The body of a `200` answer to a `GET`, as text (CSV exports).
    pub async fn text(&self, path: &str, token: &str) -> String {
        let resp = self.raw(Method::GET, path, Some(token), None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.text().await.unwrap()
    }

    /// Status and JSON body of a response (`null` when the body is empty).
    pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let url = resp.url().path().to_owned();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
        };
        (status, json)
    }

    /// Asserts an error answer: status, code, and the shape every error shares.
    #[track_caller]
    pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
        assert_eq!(got.0.as_u16(), status, "{}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{}", got.1);
        assert!(got.1["error"]["message"].is_string(), "{}", got.1);
        assert!(got.1["error"]["details"].is_object(), "{}", got.1);
    }
}
