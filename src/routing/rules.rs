//! Header rules of an alias's `additional_version_strategy`, compiled for matching.
//!
//! Names are parsed into `HeaderName`s once (so lookup is case-insensitive and
//! allocation-free) and `in` lists are split once; matching a request only compares bytes.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Requests with at most this many distinct header names are scanned instead of hashed.
const MAX_SCANNED_KEYS: usize = 16;

use crate::routes::{RuleSpec, VersionStrategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    All,
    Any,
}

#[derive(Debug)]
enum Matcher {
    Equals(Box<[u8]>),
    OneOf(Box<[Box<[u8]>]>),
}

#[derive(Debug)]
struct Rule {
    header: HeaderName,
    matcher: Matcher,
}

/// A compiled `VersionStrategy`: its rules and how they combine.
#[derive(Debug)]
pub struct RuleSet {
    combine: Combine,
    rules: Box<[Rule]>,
    /// The rules as the access log names the one that matched (`x-user-group in beta,qa`).
    text: std::sync::Arc<str>,
}

// === impl RuleSet ===

impl RuleSet {
    /// Compiles a validated strategy; `None` if a header name does not parse (which
    /// validation rules out).
    pub fn compile(strategy: &VersionStrategy) -> Option<Self> {
        let combine = if strategy.combine_type == "or" { Combine::Any } else { Combine::All };
        let rules = strategy.rules.iter().map(compile_rule).collect::<Option<Vec<_>>>()?;
        let each: Vec<String> = strategy.rules.iter().map(|r| format!("{} {} {}", r.param, r.op, r.value)).collect();
        let joiner = if combine == Combine::Any { " or " } else { " and " };
        Some(RuleSet { combine, rules: rules.into_boxed_slice(), text: each.join(joiner).into() })
    }

    pub fn text(&self) -> &std::sync::Arc<str> {
        &self.text
    }

    pub fn matches(&self, headers: &HeaderMap) -> bool {
        match self.combine {
            Combine::All => self.rules.iter().all(|rule| rule.matches(headers)),
            Combine::Any => self.rules.iter().any(|rule| rule.matches(headers)),
        }
    }
}

fn compile_rule(spec: &RuleSpec) -> Option<Rule> {
    let header = HeaderName::from_bytes(spec.param.as_bytes()).ok()?;
    let matcher = if spec.op == "in" {
        Matcher::OneOf(spec.value.split(',').map(|v| v.trim().as_bytes().into()).collect())
    } else {
        Matcher::Equals(spec.value.as_bytes().into())
    };
    Some(Rule { header, matcher })
}

// === impl Rule ===

impl Rule {
    /// True when any value of the header satisfies the rule (a header may repeat).
    fn matches(&self, headers: &HeaderMap) -> bool {
        let accepts = |value: &HeaderValue| {
            let value = value.as_bytes();
            match &self.matcher {
                Matcher::Equals(expected) => value == &expected[..],
                Matcher::OneOf(options) => options.iter().any(|o| value == &o[..]),
            }
        };
        // HeaderMap hashes a custom name a byte at a time (FNV, ~4 cycles a byte), which
        // made four rule lookups most of a resolution; comparing names is cheaper while a
        // request carries few headers (most differ in kind or length at the first check).
        if headers.keys_len() <= MAX_SCANNED_KEYS {
            headers.iter().any(|(name, value)| *name == self.header && accepts(value))
        } else {
            headers.get_all(&self.header).iter().any(accepts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(param: &str, op: &str, value: &str) -> RuleSpec {
        RuleSpec { rule_type: "Header".into(), param: param.into(), op: op.into(), value: value.into() }
    }

    fn set(combine: &str, rules: Vec<RuleSpec>) -> RuleSet {
        let strategy = VersionStrategy { combine_type: combine.into(), rules };
        RuleSet::compile(&strategy).unwrap_or_else(|| unreachable!("valid rules compile"))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn equals_is_exact_and_names_are_case_insensitive() {
        let s = set("and", vec![rule("X-User-Group", "=", "beta")]);
        assert!(s.matches(&headers(&[("x-user-group", "beta")])));
        assert!(!s.matches(&headers(&[("x-user-group", "Beta")])));
        assert!(!s.matches(&headers(&[("x-user-group", "beta2")])));
        assert!(!s.matches(&headers(&[])));
    }

    #[test]
    fn in_matches_any_listed_value() {
        let s = set("and", vec![rule("x-user-group", "in", "beta, qa")]);
        assert!(s.matches(&headers(&[("x-user-group", "beta")])));
        assert!(s.matches(&headers(&[("x-user-group", "qa")])));
        assert!(!s.matches(&headers(&[("x-user-group", "beta,qa")])));
        assert!(!s.matches(&headers(&[("x-user-group", "dev")])));
    }

    #[test]
    fn and_needs_all_or_needs_any() {
        let rules = || vec![rule("x-a", "=", "1"), rule("x-b", "in", "2,3")];
        let all = set("and", rules());
        let any = set("or", rules());
        let both = headers(&[("x-a", "1"), ("x-b", "3")]);
        let one = headers(&[("x-a", "1")]);
        assert!(all.matches(&both) && any.matches(&both));
        assert!(!all.matches(&one) && any.matches(&one));
        assert!(!any.matches(&headers(&[("x-a", "2")])));
    }

    #[test]
    fn a_repeated_header_matches_on_any_of_its_values() {
        let s = set("and", vec![rule("x-tag", "=", "canary")]);
        assert!(s.matches(&headers(&[("x-tag", "other"), ("x-tag", "canary")])));
    }

    #[test]
    fn many_headers_are_looked_up_and_few_are_scanned_alike() {
        let s = set("and", vec![rule("x-user-group", "in", "beta,qa"), rule("x-region", "=", "eu")]);
        for padding in [0, MAX_SCANNED_KEYS, 3 * MAX_SCANNED_KEYS] {
            let mut map = HeaderMap::new();
            for i in 0..padding {
                let name = HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap_or_else(|_| unreachable!());
                map.insert(name, HeaderValue::from_static("qa"));
            }
            map.append("x-user-group", HeaderValue::from_static("dev"));
            assert!(!s.matches(&map), "{padding} padding headers: one rule unmet");
            map.append("x-user-group", HeaderValue::from_static("qa"));
            map.insert("x-region", HeaderValue::from_static("eu"));
            assert!(s.matches(&map), "{padding} padding headers: both rules met");
            map.insert("X-Region", HeaderValue::from_static("EU"));
            assert!(!s.matches(&map), "{padding} padding headers: values are case-sensitive");
        }
    }
}
