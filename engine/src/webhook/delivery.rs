//! The delivery workers: the shell of the webhook outbox, with the HTTP client, the clock and the
//! tasks. The decisions (signature, back-off, giving up) are the plain functions of [`super`].
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::outbox::{Hook, Outbox, Pending};
use super::{
    after_failure, sign, AfterFailure, DELIVERY_HEADER, EVENT_HEADER, RETENTION, SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
};
use crate::config::DEFAULT_USER_AGENT;
use crate::rt::unix_ms;

/// Rows attempted at once per webhook; each heads a different call.
const BATCH: u32 = 32;
/// A worker re-reads the table at least this often, whatever it was told: a safety net, not the
/// mechanism (enqueues wake it at once).
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// After a database error, wait this long before reading the table again.
const DB_RETRY: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Start one worker per configured webhook and the pruner; they run until `shutdown` turns
/// `true` (or its sender is dropped). In-flight attempts are abandoned at shutdown: those rows
/// stay pending and are sent again after the restart, with the same delivery id.
pub fn spawn_delivery(outbox: Outbox, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for index in 0..outbox.hooks().len() {
            tasks.spawn(worker(outbox.clone(), index, shutdown.clone()));
        }
        tasks.spawn(pruner(outbox, shutdown));
        while tasks.join_next().await.is_some() {}
    })
}

/// Resolves when shutdown is asked for; a dropped sender counts as asking.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn worker(outbox: Outbox, index: usize, mut shutdown: watch::Receiver<bool>) {
    let hook = &outbox.hooks()[index];
    let name = hook.config.name.clone();
    let client = match reqwest::Client::builder()
        .timeout(hook.config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(DEFAULT_USER_AGENT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(webhook = %name, error = %e, "webhook disabled: no HTTP client");
            return;
        }
    };
    loop {
        let pass = tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            pass = deliver_due(&outbox, index, &client) => pass,
        };
        let wait = match pass {
            // Something was attempted: later rows of those calls may be due now.
            Ok(true) => continue,
            Ok(false) => match outbox.next_due_at(&name).await {
                Ok(Some(at_ms)) => {
                    let ms = u64::try_from(at_ms.saturating_sub(unix_ms())).unwrap_or(0);
                    Duration::from_millis(ms).min(IDLE_RECHECK)
                }
                Ok(None) => IDLE_RECHECK,
                Err(e) => {
                    tracing::warn!(webhook = %name, error = %e, "webhook outbox unreadable");
                    DB_RETRY
                }
            },
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "webhook outbox unreadable");
                DB_RETRY
            }
        };
        if let Ok(n) = outbox.pending(&name).await {
            metrics::gauge!("webhook_outbox_pending", "webhook" => name.clone()).set(n as f64);
        }
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            () = hook.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Attempt every due row that heads its call, concurrently. `Ok(true)` when any was attempted.
pub(super) async fn deliver_due(
    outbox: &Outbox,
    index: usize,
    client: &reqwest::Client,
) -> Result<bool, super::OutboxError> {
    let hook = &outbox.hooks()[index];
    let due = outbox.due(&hook.config.name, unix_ms(), BATCH).await?;
    if due.is_empty() {
        return Ok(false);
    }
    let mut attempts = JoinSet::new();
    for row in due {
        let (outbox, client) = (outbox.clone(), client.clone());
        attempts.spawn(async move {
            let hook = &outbox.hooks()[index];
            let result = attempt(&client, hook, &row).await;
            record(&outbox, hook, &row, result).await
        });
    }
    let mut outcome = Ok(true);
    while let Some(done) = attempts.join_next().await {
        if let Ok(Err(e)) = done {
            outcome = Err(e);
        }
    }
    outcome
}

/// One POST. `Err` carries what is logged and kept as `last_error`: a status or a transport
/// error, never a header value.
async fn attempt(client: &reqwest::Client, hook: &Hook, row: &Pending) -> Result<(), String> {
    let timestamp = u64::try_from(unix_ms() / 1000).unwrap_or(0);
    let signature = sign(hook.config.secret.expose().as_bytes(), timestamp, &row.body);
    let sent = client
        .post(hook.config.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, &row.kind)
        .header(DELIVERY_HEADER, row.id.to_string())
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(row.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!(
            "no response within {} ms",
            hook.config.timeout.as_millis()
        )),
        Err(e) => Err(describe(&e.without_url())),
    }
}

/// A transport error with its causes: reqwest's own message ("error sending request") says
/// little; the cause ("Connection refused") is what an operator needs.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

async fn record(
    outbox: &Outbox,
    hook: &Hook,
    row: &Pending,
    result: Result<(), String>,
) -> Result<(), super::OutboxError> {
    let name = hook.config.name.clone();
    let now_ms = unix_ms();
    let failures = row.attempts.saturating_add(1);
    let error = match result {
        Ok(()) => {
            metrics::counter!("webhook_deliveries_total", "webhook" => name, "outcome" => "delivered")
                .increment(1);
            return outbox.mark_delivered(row.id, now_ms).await;
        }
        Err(error) => error,
    };
    match after_failure(&hook.config, failures, now_ms, rand::random::<f64>()) {
        AfterFailure::Retry { at_ms } => {
            tracing::warn!(
                webhook = %name,
                delivery = row.id,
                event = %row.kind,
                attempt = failures,
                error = %error,
                retry_in_ms = at_ms - now_ms,
                "webhook delivery failed; will retry"
            );
            metrics::counter!("webhook_deliveries_total", "webhook" => name, "outcome" => "retry")
                .increment(1);
            outbox
                .mark_failed_attempt(row.id, failures, at_ms, false, &error)
                .await
        }
        AfterFailure::GiveUp => {
            tracing::warn!(
                webhook = %name,
                delivery = row.id,
                event = %row.kind,
                attempt = failures,
                error = %error,
                "webhook delivery given up after max_attempts; the call's later events proceed"
            );
            metrics::counter!("webhook_deliveries_total", "webhook" => name, "outcome" => "failed")
                .increment(1);
            outbox
                .mark_failed_attempt(row.id, failures, now_ms, true, &error)
                .await
        }
    }
}

/// Delete old delivered and given-up rows, at start and then hourly.
async fn pruner(outbox: Outbox, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            _ = every.tick() => {}
        }
        match outbox.prune(unix_ms(), RETENTION).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "webhook outbox pruned"),
            Err(e) => tracing::warn!(error = %e, "webhook outbox not pruned"),
        }
    }
}
