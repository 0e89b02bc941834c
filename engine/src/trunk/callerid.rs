//! The display number (外显号) by the callee's region.
//!
//! Customers answer a local number more readily than a distant one, so a trunk with
//! `caller_id: { mode: region }` shows a number of its group in the callee's city; failing that,
//! one in the capital of the callee's province (a provincial number is still "local enough"); failing
//! that, one of the group's default numbers. Several candidates take turns (round robin), so that
//! one number does not carry every call and get flagged as a nuisance caller by the carriers.
use std::collections::{BTreeMap, HashMap};

use crate::config::{CallerIdGroupConfig, RegionsConfig};

/// Where a number is (号码归属地).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub city: String,
    pub province: String,
}

/// E.164 prefixes to regions; the longest matching prefix wins (`+86138001` before `+86138`).
#[derive(Debug, Clone, Default)]
pub struct RegionTable {
    /// Longest prefix first.
    prefixes: Vec<(String, Region)>,
    capitals: HashMap<String, String>,
}

impl RegionTable {
    pub fn new(config: &RegionsConfig) -> RegionTable {
        let mut prefixes: Vec<(String, Region)> = config
            .prefixes
            .iter()
            .map(|p| {
                (
                    p.prefix.clone(),
                    Region {
                        city: p.city.clone(),
                        province: p.province.clone(),
                    },
                )
            })
            .collect();
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        RegionTable {
            prefixes,
            capitals: config.capitals.iter().cloned().collect(),
        }
    }

    /// The region of `e164` by its longest listed prefix.
    pub fn lookup(&self, e164: &str) -> Option<&Region> {
        self.prefixes
            .iter()
            .find(|(p, _)| e164.starts_with(p.as_str()))
            .map(|(_, r)| r)
    }

    /// The capital city of `province`, if listed.
    pub fn capital(&self, province: &str) -> Option<&str> {
        self.capitals.get(province).map(String::as_str)
    }
}

/// A group of display numbers with its rotation state.
#[derive(Debug, Clone)]
pub struct CallerIdGroup {
    name: String,
    /// (number, city).
    numbers: Vec<(String, String)>,
    default: Vec<String>,
    /// Per candidate list (keyed by city, or empty for the default list): how many picks it has
    /// served. Deterministic, so a test (and an operator) can predict the next number.
    turns: BTreeMap<String, usize>,
}

impl CallerIdGroup {
    pub fn new(config: &CallerIdGroupConfig) -> CallerIdGroup {
        CallerIdGroup {
            name: config.name.clone(),
            numbers: config
                .numbers
                .iter()
                .map(|n| (n.number.clone(), n.city.clone()))
                .collect(),
            default: config.default.clone(),
            turns: BTreeMap::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The display number for a call to `callee_e164`: see the module docs.
    pub fn pick(&mut self, callee_e164: &str, regions: &RegionTable) -> Option<String> {
        self.pick_where(callee_e164, regions, |_| true)
    }

    /// [`CallerIdGroup::pick`] among the numbers `usable` accepts (a trunk skips its disabled
    /// numbers); a tier with no usable number falls through to the next.
    pub fn pick_where(
        &mut self,
        callee_e164: &str,
        regions: &RegionTable,
        usable: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let region = regions.lookup(callee_e164);
        let city = region.map(|r| r.city.as_str());
        let capital = region.and_then(|r| regions.capital(&r.province));
        for place in [city, capital].into_iter().flatten() {
            let candidates: Vec<&str> = self
                .numbers
                .iter()
                .filter(|(n, c)| c == place && usable(n))
                .map(|(n, _)| n.as_str())
                .collect();
            if let Some(n) = Self::rotate(&mut self.turns, place, &candidates) {
                return Some(n);
            }
        }
        let candidates: Vec<&str> = self
            .default
            .iter()
            .map(String::as_str)
            .filter(|n| usable(n))
            .collect();
        Self::rotate(&mut self.turns, "", &candidates)
    }

    fn rotate(
        turns: &mut BTreeMap<String, usize>,
        key: &str,
        candidates: &[&str],
    ) -> Option<String> {
        if candidates.is_empty() {
            return None;
        }
        let turn = turns.entry(key.to_owned()).or_insert(0);
        let n = candidates[*turn % candidates.len()];
        *turn = turn.wrapping_add(1);
        Some(n.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GroupNumber, RegionPrefix};

    fn regions() -> RegionsConfig {
        let p = |prefix: &str, city: &str, province: &str| RegionPrefix {
            prefix: prefix.into(),
            city: city.into(),
            province: province.into(),
        };
        RegionsConfig {
            prefixes: vec![
                p("+8610", "Beijing", "Beijing"),
                p("+8621", "Shanghai", "Shanghai"),
                p("+8620", "Guangzhou", "Guangdong"),
                p("+86755", "Shenzhen", "Guangdong"),
                p("+86769", "Dongguan", "Guangdong"),
                p("+86138", "Beijing", "Beijing"),
                p("+86138001", "Shenzhen", "Guangdong"),
            ],
            capitals: vec![
                ("Beijing".into(), "Beijing".into()),
                ("Guangdong".into(), "Guangzhou".into()),
            ],
        }
    }

    fn group() -> CallerIdGroupConfig {
        let n = |number: &str, city: &str| GroupNumber {
            number: number.into(),
            city: city.into(),
        };
        CallerIdGroupConfig {
            name: "main".into(),
            numbers: vec![
                n("+861088880000", "Beijing"),
                n("+862188880000", "Shanghai"),
                n("+862088880000", "Guangzhou"),
                n("+862088880001", "Guangzhou"),
                n("+8675588880000", "Shenzhen"),
            ],
            default: vec!["+861088880000".into(), "+862188880000".into()],
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let t = RegionTable::new(&regions());
        let city = |n| t.lookup(n).map(|r| r.city.as_str());
        assert_eq!(city("+861012345678"), Some("Beijing"));
        assert_eq!(city("+8613812345678"), Some("Beijing"));
        assert_eq!(city("+8613800112345"), Some("Shenzhen"));
        assert_eq!(city("+8676912345678"), Some("Dongguan"));
        assert_eq!(city("+12125550100"), None);
        assert_eq!(
            t.lookup("+8676912345678").map(|r| r.province.as_str()),
            Some("Guangdong")
        );
    }

    #[test]
    fn a_number_in_the_callees_city_first() {
        let t = RegionTable::new(&regions());
        let mut g = CallerIdGroup::new(&group());
        assert_eq!(
            g.pick("+861012345678", &t).as_deref(),
            Some("+861088880000")
        );
        assert_eq!(
            g.pick("+8675512345678", &t).as_deref(),
            Some("+8675588880000")
        );
        // A mobile prefix (号段) works like an area code.
        assert_eq!(
            g.pick("+8613800112345", &t).as_deref(),
            Some("+8675588880000")
        );
    }

    #[test]
    fn then_the_provinces_capital_then_the_default_list() {
        let t = RegionTable::new(&regions());
        let mut g = CallerIdGroup::new(&group());
        // Dongguan has no number of its own: Guangdong's capital, Guangzhou, in turns.
        assert_eq!(
            g.pick("+8676912345678", &t).as_deref(),
            Some("+862088880000")
        );
        assert_eq!(
            g.pick("+8676912345678", &t).as_deref(),
            Some("+862088880001")
        );
        assert_eq!(
            g.pick("+8676912345678", &t).as_deref(),
            Some("+862088880000")
        );
        // Unknown region: the default list, in turns.
        assert_eq!(g.pick("+12125550100", &t).as_deref(), Some("+861088880000"));
        assert_eq!(g.pick("+12125550100", &t).as_deref(), Some("+862188880000"));
        assert_eq!(g.pick("+12125550100", &t).as_deref(), Some("+861088880000"));
    }

    #[test]
    fn rotation_is_per_city_and_skips_unusable_numbers() {
        let t = RegionTable::new(&regions());
        let mut g = CallerIdGroup::new(&group());
        // Guangzhou callees rotate through both Guangzhou numbers; a Beijing call in between
        // does not disturb that rotation.
        assert_eq!(
            g.pick("+862012345678", &t).as_deref(),
            Some("+862088880000")
        );
        assert_eq!(
            g.pick("+861012345678", &t).as_deref(),
            Some("+861088880000")
        );
        assert_eq!(
            g.pick("+862012345678", &t).as_deref(),
            Some("+862088880001")
        );
        // A disabled number is never shown; an empty tier falls through.
        let usable = |n: &str| n != "+861088880000";
        assert_eq!(
            g.pick_where("+861012345678", &t, usable).as_deref(),
            Some("+862188880000")
        );
        let none = CallerIdGroupConfig {
            numbers: Vec::new(),
            default: Vec::new(),
            ..group()
        };
        assert_eq!(CallerIdGroup::new(&none).pick("+861012345678", &t), None);
    }
}
