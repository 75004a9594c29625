//! Compiles validated routes into a [`RoutingTable`].
//!
//! Names become indices, upstream URLs become parsed `Upstream`s, header rules become
//! matchers and weights become a 100-slot schedule. Each alias's rotation cursor is taken
//! over from the previous table, so frequent reloads do not restart (and skew) the split.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, Method};
use rustc_hash::FxHashMap;

use super::rules::RuleSet;
use super::split::{Plans, Slot};
use super::{Alias, Function, Route, RoutingTable, StickyKey, Trigger, Upstream, Version};
use crate::health::{UpstreamHealth, UpstreamPolicy};
use crate::routes::{AliasSpec, FunctionSpec, TriggerStatus, ValidRoutes};

/// A validated file that still fails to compile means validation missed a case.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile {what}: {detail}")]
pub struct CompileError {
    what: String,
    detail: String,
}

/// Builds the table for `routes`, continuing the split cursors and upstream health of
/// `previous`.
pub fn compile(
    routes: Arc<ValidRoutes>,
    generation: u64,
    previous: Option<&RoutingTable>,
    policy: &UpstreamPolicy,
) -> Result<RoutingTable, CompileError> {
    let spec = routes.spec();
    // Upstream health carried over from the previous table, looked up without allocating.
    let carried: FxHashMap<&str, &Arc<UpstreamHealth>> = previous
        .into_iter()
        .flat_map(|table| table.upstreams())
        .filter(|upstream| upstream.health.same_policy(policy))
        .map(|upstream| (upstream.health.authority(), &upstream.health))
        .collect();
    let mut fresh: FxHashMap<String, Arc<UpstreamHealth>> = FxHashMap::default();
    let mut health_of = |authority: &str| {
        if let Some(health) = carried.get(authority) {
            return Arc::clone(health);
        }
        if let Some(health) = fresh.get(authority) {
            return Arc::clone(health);
        }
        let health = Arc::new(UpstreamHealth::new(authority, policy.clone()));
        fresh.insert(authority.to_owned(), Arc::clone(&health));
        health
    };
    let trigger_count = spec.functions.iter().map(|f| f.triggers.len()).sum();
    let mut functions = Vec::with_capacity(spec.functions.len());
    let mut function_index = FxHashMap::with_capacity_and_hasher(spec.functions.len(), Default::default());
    let mut triggers = Vec::with_capacity(trigger_count);
    let mut trigger_index = FxHashMap::with_capacity_and_hasher(trigger_count, Default::default());
    let mut max_depth = 0;
    let mut plans = Plans::default();

    for function_spec in &spec.functions {
        let function_id = functions.len() as u32;
        let earlier = previous.and_then(|table| table.function(&function_spec.name));
        let function = compile_function(function_spec, earlier, &mut health_of, &mut plans)?;
        for trigger_spec in &function_spec.triggers {
            let path = trigger_spec.effective_path(&function_spec.name);
            let trigger = Trigger {
                name: trigger_spec.effective_name(&function_spec.name).into(),
                target: trigger_spec.target.as_str().into(),
                function: function_id,
                method: parse_method(trigger_spec.req_method.as_deref())?,
                disabled: trigger_spec.trigger_status == TriggerStatus::Disabled,
                alias: function.aliases.iter().position(|a| *a.name == *trigger_spec.target).map(|i| i as u16),
                routes: Box::new([]),
                path: path.as_str().into(),
            };
            let trigger = Trigger { routes: routes_of(&function, &trigger, &trigger_spec.target)?, ..trigger };
            max_depth = max_depth.max(depth(&path));
            trigger_index.insert(path.into_boxed_str(), triggers.len() as u32);
            triggers.push(trigger);
        }
        function_index.insert(function_spec.name.as_str().into(), function_id);
        functions.push(function);
    }

    Ok(RoutingTable {
        generation,
        revision: 0,
        source: routes,
        functions: functions.into_boxed_slice(),
        function_index,
        triggers: triggers.into_boxed_slice(),
        trigger_index,
        max_depth,
        retire: None,
    })
}

/// The upstream of a latest that has no code.
const NO_CODE: &str = "http://no-code.invalid";

fn compile_function(
    spec: &FunctionSpec,
    earlier: Option<&Function>,
    health_of: &mut impl FnMut(&str) -> Arc<UpstreamHealth>,
    plans: &mut Plans,
) -> Result<Function, CompileError> {
    let mut versions = Vec::with_capacity(spec.versions.len() + 1);
    // A function without code yet: nothing routes to its latest (validation sees to it),
    // which still needs a place in the table; `.invalid` never resolves (RFC 2606).
    let latest = if spec.upstream.is_empty() { NO_CODE } else { spec.upstream.as_str() };
    versions.push(version("latest", latest, health_of)?);
    for v in &spec.versions {
        versions.push(version(&v.version, &v.upstream, health_of)?);
    }
    let aliases = spec
        .aliases
        .iter()
        .map(|alias| {
            let cursor = earlier
                .and_then(|f| f.alias_named(&alias.name))
                .map(|a| a.split.cursor().clone())
                .unwrap_or_else(|| Arc::new(AtomicU64::new(0)));
            compile_alias(alias, &versions, cursor, plans)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Function {
        name: spec.name.as_str().into(),
        timeout: spec.timeout_ms.map(Duration::from_millis),
        versions: versions.into_boxed_slice(),
        aliases: aliases.into_boxed_slice(),
    })
}

fn version(
    name: &str,
    url: &str,
    health_of: &mut impl FnMut(&str) -> Arc<UpstreamHealth>,
) -> Result<Version, CompileError> {
    let upstream = Upstream::parse(url, |authority| health_of(authority))
        .ok_or_else(|| CompileError { what: format!("version {name}"), detail: format!("bad upstream {url}") })?;
    let header = http::HeaderValue::from_str(name)
        .map_err(|e| CompileError { what: format!("version {name}"), detail: e.to_string() })?;
    Ok(Version { name: name.into(), header, upstream })
}

fn compile_alias(
    spec: &AliasSpec,
    versions: &[Version],
    cursor: Arc<AtomicU64>,
    plans: &mut Plans,
) -> Result<Alias, CompileError> {
    let missing = |version: &str| CompileError {
        what: format!("alias {}", spec.name),
        detail: format!("unknown version {version}"),
    };
    let index_of =
        |name: &str| versions.iter().position(|v| *v.name == *name).map(|i| i as u16).ok_or_else(|| missing(name));
    // Slots: the alias's own version, then weighted versions, then rule-only versions.
    let mut slots: Vec<u16> = vec![index_of(&spec.version)?];
    let slot_of = |name: &str, slots: &mut Vec<u16>| -> Result<Slot, CompileError> {
        let index = index_of(name)?;
        let slot = match slots.iter().position(|s| *s == index) {
            Some(slot) => slot,
            None => {
                slots.push(index);
                slots.len() - 1
            }
        };
        Slot::try_from(slot).map_err(|_| missing(name))
    };
    let mut weights = Vec::new();
    for (name, weight) in &spec.additional_version_weights {
        let slot = slot_of(name, &mut slots)?;
        weights.resize(usize::from(slot), 0);
        weights[usize::from(slot) - 1] = u8::try_from(*weight).map_err(|_| missing(name))?;
    }
    let mut strategy = Vec::new();
    for (name, rules) in &spec.additional_version_strategy {
        let slot = slot_of(name, &mut slots)?;
        let rules = RuleSet::compile(rules).ok_or_else(|| missing(name))?;
        strategy.push((slot, rules));
    }
    let sticky = match &spec.sticky {
        Some(sticky) => match (&sticky.header, &sticky.cookie) {
            (Some(header), _) => {
                Some(StickyKey::Header(HeaderName::from_bytes(header.as_bytes()).map_err(|_| missing(header))?))
            }
            (None, Some(cookie)) => Some(StickyKey::Cookie(cookie.as_str().into())),
            (None, None) => None,
        },
        None => None,
    };
    Ok(Alias {
        name: spec.name.as_str().into(),
        versions: slots.into_boxed_slice(),
        strategy: strategy.into_boxed_slice(),
        split: plans.split(&weights, cursor),
        sticky,
    })
}

/// The routes a trigger can take: one per alias slot, or the one fixed version.
fn routes_of(function: &Function, trigger: &Trigger, target: &str) -> Result<Box<[Route]>, CompileError> {
    let route = |version: u16| Route { version, metrics: OnceLock::new() };
    if let Some(alias) = trigger.alias {
        let alias = &function.aliases[usize::from(alias)];
        return Ok(alias.versions.iter().map(|v| route(*v)).collect());
    }
    let version = function.versions.iter().position(|v| *v.name == *target).ok_or_else(|| CompileError {
        what: format!("trigger {}", trigger.name),
        detail: format!("unknown target {target}"),
    })?;
    Ok(Box::new([route(version as u16)]))
}

fn parse_method(method: Option<&str>) -> Result<Option<Method>, CompileError> {
    match method {
        None | Some("ANY") => Ok(None),
        Some(name) => Method::from_bytes(name.as_bytes())
            .map(Some)
            .map_err(|e| CompileError { what: "req_method".into(), detail: e.to_string() }),
    }
}

/// Number of segments in a canonical trigger path (`/` has none).
fn depth(path: &str) -> usize {
    if path == "/" { 0 } else { path.matches('/').count() }
}
