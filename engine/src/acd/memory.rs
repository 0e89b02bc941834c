//! Call memory (外呼记忆): a customer number bound to the agent who last called or served it.
//!
//! A binding holds until `expires_at` (exclusive) and applies to the service numbers it lists
//! (empty: every service number). Times are [`Instant`]s like the rest of the ACD; bindings
//! loaded from a database with wall-clock expiries are converted by the shell at load
//! (`now + (expires_wall - now_wall)`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::AgentId;

/// Call-memory settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryConfig {
    /// `None`: call memory is off (no automatic bindings, no lookups).
    pub validity: Option<Duration>,
    /// Service numbers new automatic bindings apply to (empty: all).
    pub service_numbers: BTreeSet<String>,
    /// When the bound agent is not idle: `true` refuses the enqueue with
    /// [`super::Refusal::MemoryAgentUnavailable`] (the flow goes to its fallback node);
    /// `false` queues the caller normally.
    pub refuse_when_unavailable: bool,
}

/// One binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub agent: AgentId,
    pub expires_at: Instant,
    /// Empty: every service number.
    pub service_numbers: BTreeSet<String>,
}

impl Binding {
    fn applies(&self, service_number: Option<&str>, now: Instant) -> bool {
        now < self.expires_at
            && (self.service_numbers.is_empty()
                || service_number.is_some_and(|s| self.service_numbers.contains(s)))
    }
}

/// Customer number → binding.
#[derive(Clone, Debug, Default)]
pub struct CallMemory {
    bindings: BTreeMap<String, Binding>,
}

impl CallMemory {
    /// Bind (or rebind) `customer` to `binding.agent`.
    pub fn bind(&mut self, customer: impl Into<String>, binding: Binding) {
        self.bindings.insert(customer.into(), binding);
    }

    pub fn unbind(&mut self, customer: &str) -> Option<Binding> {
        self.bindings.remove(customer)
    }

    /// The agent bound to `customer` for a call to `service_number`, if the binding is
    /// still valid at `now` and applies to that number.
    pub fn lookup(
        &self,
        customer: &str,
        service_number: Option<&str>,
        now: Instant,
    ) -> Option<&AgentId> {
        self.bindings
            .get(customer)
            .filter(|b| b.applies(service_number, now))
            .map(|b| &b.agent)
    }

    /// Drops expired bindings (call it now and then; lookups ignore them anyway).
    pub fn purge(&mut self, now: Instant) {
        self.bindings.retain(|_, b| now < b.expires_at);
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_holds_until_expiry_for_its_service_numbers() {
        let t = super::super::test_epoch();
        let mut m = CallMemory::default();
        m.bind(
            "13800000000",
            Binding {
                agent: "a1".into(),
                expires_at: t + Duration::from_secs(3600),
                service_numbers: ["4001".to_owned()].into(),
            },
        );
        assert_eq!(
            m.lookup("13800000000", Some("4001"), t),
            Some(&AgentId::from("a1"))
        );
        assert_eq!(
            m.lookup("13800000000", Some("4002"), t),
            None,
            "other service number"
        );
        assert_eq!(
            m.lookup("13800000000", None, t),
            None,
            "unknown service number"
        );
        assert_eq!(
            m.lookup("13900000000", Some("4001"), t),
            None,
            "other customer"
        );
        let last = t + Duration::from_secs(3599);
        assert!(m.lookup("13800000000", Some("4001"), last).is_some());
        let expiry = t + Duration::from_secs(3600);
        assert_eq!(
            m.lookup("13800000000", Some("4001"), expiry),
            None,
            "expired"
        );
        m.purge(expiry);
        assert!(m.is_empty());
    }

    #[test]
    fn an_empty_service_list_applies_everywhere_and_rebinding_replaces() {
        let t = super::super::test_epoch();
        let mut m = CallMemory::default();
        let b = |agent: &str| Binding {
            agent: agent.into(),
            expires_at: t + Duration::from_secs(10),
            service_numbers: BTreeSet::new(),
        };
        m.bind("1", b("a1"));
        assert_eq!(m.lookup("1", None, t), Some(&AgentId::from("a1")));
        m.bind("1", b("a2"));
        assert_eq!(m.lookup("1", Some("x"), t), Some(&AgentId::from("a2")));
        assert_eq!(m.len(), 1);
        assert!(m.unbind("1").is_some());
        assert_eq!(m.lookup("1", None, t), None);
    }
}
