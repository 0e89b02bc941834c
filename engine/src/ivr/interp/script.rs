//! Templates and conditions: minijinja, with the call's variables as context.
//!
//! Context of every template (`set`, `http`, dial targets, bridge headers) and expression
//! (`switch` cases, `queue` priority):
//! - `caller`, `called`: the caller's and the dialled number (strings);
//! - `vars.<name>`: the call variables (strings; an unset one is undefined, which renders as
//!   the empty string and compares unequal to everything);
//! - `in_hours('calendar')`: whether a calendar of the flow is open at the call's local time.
//!
//! Besides minijinja's built-in filters and tests (`startingwith`, `in`, `int`, `length`, …),
//! Python's string methods work (`caller.startswith('138')`, minijinja-contrib's pycompat),
//! and a `matches` test and filter check a regex against the whole string (anchored at both
//! ends, `regex-lite` syntax): `caller is matches('1[3-9][0-9]{9}')`. Add `.*` for a search.
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::super::hours;
use super::super::model::Calendar;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_test("matches", matches);
    env.add_filter("matches", matches);
    env
});

/// The environment the interpreter evaluates in; the validator compiles templates and
/// expressions with it so that what passes validation means the same at run time.
pub fn environment() -> &'static Environment<'static> {
    &ENV
}

fn matches(value: &str, pattern: &str) -> Result<bool, Error> {
    let re = regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("bad regex {pattern:?}: {e}"),
        )
    })?;
    Ok(re.is_match(value))
}

/// Whether `digits` matches `pattern` as a whole (a `collect` node's check).
pub(super) fn full_match(pattern: &str, digits: &str) -> Result<bool, String> {
    matches(digits, pattern).map_err(|e| e.to_string())
}

/// What templates see of the call at one instant.
pub(super) struct Scope<'a> {
    pub caller: &'a str,
    pub called: &'a str,
    pub vars: &'a BTreeMap<String, String>,
    pub calendars: &'a BTreeMap<String, Arc<Calendar>>,
    /// The call's local time, Unix seconds.
    pub unix: i64,
}

impl Scope<'_> {
    fn context(&self) -> Value {
        let calendars = self.calendars.clone();
        let unix = self.unix;
        let in_hours = Value::from_function(move |name: &str| -> Result<bool, Error> {
            let cal = calendars.get(name).ok_or_else(|| {
                Error::new(ErrorKind::InvalidOperation, format!("no calendar {name:?}"))
            })?;
            hours::is_open(cal, unix)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("caller", Value::from(self.caller));
        ctx.insert("called", Value::from(self.called));
        ctx.insert("vars", Value::from(self.vars.clone()));
        ctx.insert("in_hours", in_hours);
        Value::from(ctx)
    }

    pub fn render(&self, template: &str) -> Result<String, Error> {
        ENV.render_str(template, self.context())
    }

    pub fn eval(&self, expr: &str) -> Result<Value, Error> {
        ENV.compile_expression(expr)?.eval(self.context())
    }
}
