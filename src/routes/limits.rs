//! What reading routing state may cost, checked in linear time before a parser sees it:
//! its size, its nesting depth and, in YAML, how far aliases expand it.
//!
//! The parsers behind serde are not linear in every input: a YAML document nested 200,000
//! levels deep costs libyaml's loader minutes (the cost grows with the square of the depth),
//! and a "billion laughs" alias bomb expands a few hundred bytes into gigabytes of nodes.
//! The routes schema is about ten levels deep and never needs aliases to be large, so a
//! document outside these bounds is refused with an error that names the bound, after one
//! pass that stops as soon as a bound is crossed.

use yaml_rust2::parser::{Event, Parser};

use super::RoutesError;

/// Deepest nesting of mappings and sequences a routes document may have. The schema needs
/// about ten (functions → aliases → strategy → rules → values); the rest is headroom.
pub const MAX_DEPTH: usize = 32;

/// How many nodes YAML aliases may add to a document when expanded (each `*ref` counts the
/// nodes of what it refers to, nested aliases included). Sharing a rule set across a few
/// thousand aliases stays far below; an alias bomb crosses it in a few dozen events.
pub const MAX_ALIAS_NODES: u64 = 100_000;

/// The default of `limits.max_routes_bytes`: a generated file of 10,000 functions is about
/// 3 MiB.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;

/// The configurable part of the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest routing state accepted, in bytes (`limits.max_routes_bytes`).
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// Refuses `source` if it is larger, deeper or (YAML) expands further than the bounds allow.
pub fn check(source: &str, name: &str, limits: &ReadLimits, json: bool) -> Result<(), RoutesError> {
    if source.len() > limits.max_bytes {
        return Err(too_large(name, limits));
    }
    if json { json_depth(source.as_bytes(), name) } else { yaml_shape(source, name) }
}

/// The error for a document over the size limit (a file is only read up to the limit, so
/// its full size is not known).
pub fn too_large(name: &str, limits: &ReadLimits) -> RoutesError {
    RoutesError::single(
        name,
        None,
        "",
        format!("larger than the limit of {} bytes (limits.max_routes_bytes)", limits.max_bytes),
    )
}

/// Brackets outside strings, counted byte by byte: JSON has no other way to nest.
pub fn json_depth(source: &[u8], name: &str) -> Result<(), RoutesError> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in source {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'\n' => line += 1,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep(name, line));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// One pass over the YAML event stream (yaml-rust2's scanner is linear where libyaml's
/// loader is not), stopping at the first bound crossed. A syntax error is left for the
/// real parser to report, with its own wording (the two parsers differ at the edges, and
/// this pass must not refuse what the real one accepts).
fn yaml_shape(source: &str, name: &str) -> Result<(), RoutesError> {
    let mut parser = Parser::new_from_str(source);
    // Nodes counted so far in each open collection (aliases expanded), innermost last,
    // with the anchor the collection defines.
    let mut open: Vec<(u64, usize)> = Vec::new();
    // Expanded node count of each anchor defined so far.
    let mut anchors: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut aliased: u64 = 0;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // The scanner's own bound on flow nesting (it looks ahead of the events).
            Err(error) if error.info().contains("recursion limit") => {
                return Err(too_deep(name, error.marker().line()));
            }
            Err(_) => return Ok(()),
        };
        let line = mark.line();
        let node = match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((1, anchor));
                if open.len() > MAX_DEPTH {
                    return Err(too_deep(name, line));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((count, anchor)) = open.pop() else { continue };
                if anchor > 0 {
                    anchors.insert(anchor, count);
                }
                count
            }
            Event::Scalar(_, _, anchor, _) => {
                if anchor > 0 {
                    anchors.insert(anchor, 1);
                }
                1
            }
            Event::Alias(anchor) => {
                let size = anchors.get(&anchor).copied().unwrap_or(1);
                aliased = aliased.saturating_add(size);
                if aliased > MAX_ALIAS_NODES {
                    return Err(RoutesError::single(
                        name,
                        Some(line),
                        "",
                        format!(
                            "aliases expand the document by more than {MAX_ALIAS_NODES} nodes (the limit on YAML alias expansion)"
                        ),
                    ));
                }
                size
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => continue,
        };
        if let Some((count, _)) = open.last_mut() {
            *count = count.saturating_add(node);
        }
    }
}

fn too_deep(name: &str, line: usize) -> RoutesError {
    RoutesError::single(
        name,
        Some(line),
        "",
        format!("nested more than {MAX_DEPTH} levels deep (the limit on nesting; the routes schema needs about ten)"),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const DEEP: usize = 200_000;

    fn refused(source: &str, json: bool) -> String {
        match check(source, "routes.yaml", &ReadLimits::default(), json) {
            Err(error) => error.to_string(),
            Ok(()) => unreachable!("accepted a document outside the bounds"),
        }
    }

    #[test]
    fn the_shipped_routes_file_is_well_inside_every_bound() {
        let routes = include_str!("../../config/routes.yaml");
        assert!(check(routes, "routes.yaml", &ReadLimits::default(), false).is_ok());
    }

    #[test]
    fn deep_flow_and_block_nesting_is_refused_with_the_limit_named() {
        let flow = format!("functions: {}{}", "[".repeat(DEEP), "]".repeat(DEEP));
        let block: String = (0..DEEP).map(|_| "- ").collect::<String>() + "x\n";
        let mappings: String = (0..40).map(|depth| format!("{}k:\n", "  ".repeat(depth))).collect();
        for doc in [&flow, &block, &mappings] {
            let started = Instant::now();
            let error = refused(doc, false);
            assert!(error.contains("nested more than 32 levels"), "{error}");
            // Not a timing target: a linear pass stops at level 33, whatever follows.
            assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        }
        let json = format!("{{\"functions\": {}{}}}", "[".repeat(DEEP), "]".repeat(DEEP));
        assert!(refused(&json, true).contains("routes.yaml:1: nested more than 32 levels"));
    }

    #[test]
    fn json_brackets_inside_strings_do_not_count() {
        let json = format!(r#"{{"project_id": "{}\"{}", "functions": []}}"#, "[".repeat(100), "{".repeat(100));
        assert!(json_depth(json.as_bytes(), "r").is_ok());
    }

    #[test]
    fn an_alias_bomb_is_refused_and_a_modest_shared_anchor_is_not() {
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, previous) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 9].join(",")));
        }
        assert!(refused(&bomb, false).contains("limit on YAML alias expansion"));
        let shared = "rules: &rules [{a: 1}, {b: 2}]\n".to_owned()
            + &(0..1000).map(|i| format!("k{i}: *rules\n")).collect::<String>();
        assert!(check(&shared, "r", &ReadLimits::default(), false).is_ok());
    }

    #[test]
    fn a_document_over_the_size_limit_is_refused_before_it_is_scanned() {
        let error = check("project_id: p\n", "routes.yaml", &ReadLimits { max_bytes: 8 }, false);
        let error = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(error, "routes.yaml: larger than the limit of 8 bytes (limits.max_routes_bytes)");
    }
}
