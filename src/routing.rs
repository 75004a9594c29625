//! The compiled, immutable routing table and per-request resolution.
//!
//! A request path finds its trigger by the longest `/`-bounded prefix (one hash lookup per
//! candidate prefix, bounded by the deepest trigger path), the trigger names a function
//! and a target, and an alias target picks one of its versions: header rules first, then
//! the sticky key, then the weighted rotation. Nothing here allocates per request.
//!
//! A table is never mutated: a change compiles a new one and the reloader publishes it
//! with one `ArcSwap` store, so a request sees either the old table or the new one.

mod compile;
mod rules;
pub mod split;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use rustc_hash::FxHashMap;

use crate::health::UpstreamHealth;
use crate::metrics::RouteMetrics;
use crate::routes::ValidRoutes;
pub use compile::{CompileError, compile};
use rules::RuleSet;
use split::{Slot, Split};

pub struct RoutingTable {
    generation: u64,
    /// The source's revision of the routing state this table serves (the etcd revision of
    /// its last change, or the routes file's count of applied contents).
    revision: u64,
    source: Arc<ValidRoutes>,
    functions: Box<[Function]>,
    function_index: FxHashMap<Box<str>, u32>,
    triggers: Box<[Trigger]>,
    trigger_index: FxHashMap<Box<str>, u32>,
    /// Segments in the deepest trigger path: longer request paths are cut to this depth
    /// before the prefix walk, so a path of many slashes costs no more than a short one.
    max_depth: usize,
    /// Where the table's memory goes when the last request using it lets go of it.
    retire: Option<Retire>,
}

/// Takes a replaced table's contents to be freed elsewhere: freeing 10,000 functions takes
/// milliseconds, which no request should pay for (the store passes its background thread).
pub type Retire = Arc<dyn Fn(Box<dyn Send>) + Send + Sync>;

pub struct Function {
    /// Shared (not boxed) so that an access log line can hold it past the request.
    pub name: Arc<str>,
    pub timeout: Option<Duration>,
    /// Index 0 is `latest`.
    versions: Box<[Version]>,
    aliases: Box<[Alias]>,
}

pub struct Version {
    pub name: Arc<str>,
    /// The name as a response header value (`X-Graygate-Version`), built once.
    pub header: http::HeaderValue,
    pub upstream: Upstream,
}

/// How graygate talks to an upstream, from its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http://`: HTTP/1.1 over TCP.
    Http1,
    /// `h2c://`: HTTP/2 with prior knowledge over TCP.
    H2c,
    /// `https://`: TLS, HTTP/2 or HTTP/1.1 by ALPN.
    Https,
}

/// Where a version runs: scheme, authority and an optional base path, and how healthy
/// that authority has been lately.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub protocol: Protocol,
    scheme: Scheme,
    authority: Authority,
    /// The `Host` an HTTP/1 request to it carries (the authority, built once).
    pub host: HeaderValue,
    base_path: Box<str>,
    pub health: Arc<UpstreamHealth>,
}

struct Alias {
    name: Box<str>,
    /// Slot → index into the function's versions; slot 0 is the alias's own version.
    versions: Box<[u16]>,
    strategy: Box<[(Slot, RuleSet)]>,
    split: Split,
    sticky: Option<StickyKey>,
}

enum StickyKey {
    Header(HeaderName),
    Cookie(Box<str>),
}

pub struct Trigger {
    pub name: Box<str>,
    pub path: Arc<str>,
    pub target: Arc<str>,
    function: u32,
    method: Option<Method>,
    /// A disabled trigger keeps its path (no other trigger can take it, no shorter prefix
    /// serves it) and routes nothing: its requests are answered as unrouted.
    disabled: bool,
    alias: Option<u16>,
    /// One route per version the trigger can reach (per alias slot).
    routes: Box<[Route]>,
}

/// A (trigger, version) pair: the unit of metrics.
pub struct Route {
    version: u16,
    pub metrics: OnceLock<RouteMetrics>,
}

/// The outcome of resolving one request.
pub struct Resolved<'t, 'r> {
    pub function: &'t Function,
    pub trigger: &'t Trigger,
    pub version: &'t Version,
    pub route: &'t Route,
    /// The rest of the path after the trigger path: empty or starting with `/`.
    pub remainder: &'r str,
    /// The version the alias chose but could not use (its upstream is ejected).
    pub fallback_from: Option<&'t Version>,
    /// Why this version: what the access log says.
    pub decision: Decision,
}

/// How a request got its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The trigger names a version (or `latest`): there was nothing to choose.
    Fixed,
    /// The header rules of this slot's version matched (slot k ≥ 1: the k-th additional version).
    Rule(Slot),
    /// The sticky key hashed to this bucket (0..100).
    Sticky(u8),
    /// The weighted rotation's position in its 100-request cycle.
    Rotation(u8),
}

/// Why a request has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    NoTrigger,
    MethodNotAllowed,
}

// === impl RoutingTable ===

impl RoutingTable {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Set by the store as it publishes the table.
    pub fn stamp(&mut self, generation: u64, revision: u64, retire: Option<Retire>) {
        self.generation = generation;
        self.revision = revision;
        self.retire = retire;
    }

    /// The validated routes this table was compiled from.
    pub fn source(&self) -> &Arc<ValidRoutes> {
        &self.source
    }

    /// The trigger whose path is the longest `/`-bounded prefix of `path`.
    pub fn find_trigger<'r>(&self, path: &'r str) -> Option<(&Trigger, &'r str)> {
        if !path.starts_with('/') {
            return None;
        }
        // Cut the path to the deepest trigger's depth: deeper prefixes cannot match.
        let end =
            path.bytes().enumerate().filter(|(_, b)| *b == b'/').nth(self.max_depth).map_or(path.len(), |(at, _)| at);
        let mut candidate = &path[..end];
        loop {
            let key = if candidate.is_empty() { "/" } else { candidate };
            if let Some(index) = self.trigger_index.get(key) {
                let trigger = &self.triggers[*index as usize];
                if trigger.disabled {
                    return None;
                }
                // The root trigger reached through the empty prefix: `/` itself leaves nothing,
                // as it does when matched directly.
                let rest = if path == "/" { "" } else { &path[candidate.len()..] };
                return Some((trigger, rest));
            }
            if candidate.is_empty() {
                return None;
            }
            candidate = &candidate[..candidate.rfind('/').unwrap_or(0)];
        }
    }

    /// Finds the trigger, then the version that serves this request.
    pub fn resolve<'r>(
        &self,
        method: &Method,
        path: &'r str,
        headers: &HeaderMap,
    ) -> Result<Resolved<'_, 'r>, Unrouted> {
        let (trigger, remainder) = self.find_trigger(path).ok_or(Unrouted::NoTrigger)?;
        if let Some(allowed) = &trigger.method
            && allowed != method
        {
            return Err(Unrouted::MethodNotAllowed);
        }
        let function = &self.functions[trigger.function as usize];
        let version_at = |slot: Slot| &function.versions[usize::from(trigger.routes[usize::from(slot)].version)];
        let (mut slot, decision) = match trigger.alias {
            Some(alias) => function.aliases[alias as usize].choose(headers),
            None => (0, Decision::Fixed),
        };
        let mut fallback_from = None;
        // An ejected additional version gives its share back to the alias's own version.
        if slot != 0 && version_at(slot).upstream.health.is_ejected() && !version_at(0).upstream.health.is_ejected() {
            fallback_from = Some(version_at(slot));
            slot = 0;
        }
        let route = &trigger.routes[usize::from(slot)];
        Ok(Resolved { function, trigger, version: version_at(slot), route, remainder, fallback_from, decision })
    }

    /// The version that serves a direct call of `target` (a version, `latest` or an alias)
    /// of function `name`: an alias chooses as it does for a trigger's requests (rules,
    /// sticky key, rotation, and an ejected additional version's share falls back).
    pub fn resolve_target(&self, name: &str, target: &str, headers: &HeaderMap) -> Option<(&Function, &Version)> {
        let function = self.function(name)?;
        if let Some(alias) = function.alias_named(target) {
            let version_at = |slot: Slot| function.versions.get(usize::from(*alias.versions.get(usize::from(slot))?));
            let chosen = version_at(alias.choose(headers).0)?;
            let own = version_at(0)?;
            let ejected = |v: &Version| v.upstream.health.is_ejected();
            let version = if ejected(chosen) && !ejected(own) { own } else { chosen };
            return Some((function, version));
        }
        let version = function.versions.iter().find(|v| &*v.name == target)?;
        Some((function, version))
    }

    /// Every upstream of the table, once per version (for carrying health across tables).
    pub fn upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.functions.iter().flat_map(|f| f.versions.iter().map(|v| &v.upstream))
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        let index = self.function_index.get(name)?;
        Some(&self.functions[*index as usize])
    }
}

impl Drop for RoutingTable {
    fn drop(&mut self) {
        if let Some(retire) = self.retire.take() {
            let parts = (
                std::mem::take(&mut self.functions),
                std::mem::take(&mut self.triggers),
                std::mem::take(&mut self.function_index),
                std::mem::take(&mut self.trigger_index),
                Arc::clone(&self.source),
            );
            retire(Box::new(parts));
        }
    }
}

// === impl Trigger ===

impl Trigger {
    /// The alias this trigger routes to, if its target is one (not a version or `latest`).
    pub fn alias(&self) -> Option<&Arc<str>> {
        self.alias.map(|_| &self.target)
    }
}

// === impl Function ===

impl Function {
    fn alias_named(&self, name: &str) -> Option<&Alias> {
        self.aliases.iter().find(|a| &*a.name == name)
    }

    /// The header rules that send `trigger`'s alias to `slot`, as text (for the access log).
    pub fn rule_text(&self, trigger: &Trigger, slot: Slot) -> Option<&Arc<str>> {
        let alias = self.aliases.get(usize::from(trigger.alias?))?;
        alias.strategy.iter().find(|(s, _)| *s == slot).map(|(_, rules)| rules.text())
    }
}

// === impl Alias ===

impl Alias {
    /// Header rules first, then the sticky key, then the rotation.
    fn choose(&self, headers: &HeaderMap) -> (Slot, Decision) {
        for (slot, rules) in self.strategy.iter() {
            if rules.matches(headers) {
                return (*slot, Decision::Rule(*slot));
            }
        }
        if let Some(key) = self.sticky.as_ref().and_then(|s| s.find(headers)) {
            let bucket = split::bucket_of(key);
            return (self.split.for_bucket(bucket), Decision::Sticky(bucket as u8));
        }
        let (slot, position) = self.split.next();
        (slot, Decision::Rotation(position))
    }
}

// === impl StickyKey ===

impl StickyKey {
    /// The request's sticky key, if it carries one.
    fn find<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        match self {
            StickyKey::Header(name) => headers.get(name).map(|v| v.as_bytes()),
            StickyKey::Cookie(name) => {
                headers.get_all(http::header::COOKIE).iter().flat_map(|v| v.as_bytes().split(|b| *b == b';')).find_map(
                    |pair| {
                        let pair = pair.trim_ascii();
                        let eq = pair.iter().position(|b| *b == b'=')?;
                        (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
                    },
                )
            }
        }
    }
}

// === impl Upstream ===

impl Upstream {
    /// Parses a validated `http://host:port[/base]` URL.
    pub fn parse(url: &str, health: impl FnOnce(&str) -> Arc<UpstreamHealth>) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let base = uri.path().trim_end_matches('/');
        let authority = uri.authority()?.clone();
        let (protocol, scheme) = match uri.scheme_str()? {
            "http" => (Protocol::Http1, Scheme::HTTP),
            "h2c" => (Protocol::H2c, Scheme::HTTP),
            "https" => (Protocol::Https, Scheme::HTTPS),
            _ => return None,
        };
        let host = HeaderValue::from_str(authority.as_str()).ok()?;
        Some(Upstream { protocol, scheme, health: health(authority.as_str()), authority, host, base_path: base.into() })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The port connections go to (the scheme's default when the URL names none).
    pub fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(if self.scheme == Scheme::HTTPS { 443 } else { 80 })
    }

    /// The URI for a request: base path, then the remainder, then the query; absolute for
    /// the legacy client, origin-form (path only, with `host` beside it) for HTTP/1.
    pub fn uri(&self, remainder: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut path = String::with_capacity(self.base_path.len() + remainder.len() + query_len + 1);
        path.push_str(&self.base_path);
        if remainder.is_empty() {
            if self.base_path.is_empty() {
                path.push('/');
            }
        } else {
            path.push_str(remainder);
        }
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        if self.protocol == Protocol::Http1 {
            return Uri::builder().path_and_query(path).build();
        }
        Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(path).build()
    }
}

#[cfg(test)]
mod tests;
