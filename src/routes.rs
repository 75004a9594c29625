//! The routes file: `routes.yaml` text → [`RoutesFile`] (serde) → [`ValidRoutes`] (validated).
//!
//! ```text
//!   bytes ──parse──▶ RoutesFile ──validate──▶ ValidRoutes ──compile──▶ routing::RoutingTable
//!           (serde, deny_unknown_fields)   (names, references,        (immutable, lookup-ready)
//!                                           weights, rules, paths)
//! ```
//! Errors from either stage carry the file name, the line and the field path, and all
//! validation problems are reported at once.

pub mod changes;
pub mod edit;
pub mod file;
pub mod limits;
mod locate;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use file::{
    AliasSpec, FunctionSpec, RoutesFile, RuleSpec, StickySpec, TriggerSpec, TriggerStatus, VersionSpec, VersionStrategy,
};
pub use limits::ReadLimits;
use locate::LineIndex;
pub use validate::Issue;

/// A routes file that passed validation; the only input the routing compiler accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRoutes(RoutesFile);

/// Why a routes document was rejected: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesError {
    pub problems: Vec<Problem>,
}

/// One problem, located in the source document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

// === impl ValidRoutes ===

impl ValidRoutes {
    /// Validates an in-memory routes model (used by the management API).
    pub fn new(file: RoutesFile) -> Result<Self, Vec<Issue>> {
        let issues = validate::validate(&file);
        if issues.is_empty() { Ok(ValidRoutes(file)) } else { Err(issues) }
    }

    /// The state of a store that holds none yet: no project, no function.
    pub fn empty() -> Self {
        ValidRoutes(RoutesFile { project_id: String::new(), region: "local".to_owned(), functions: Vec::new() })
    }

    /// Parses and validates a document within the default [`ReadLimits`]; `name` is used in
    /// error messages.
    pub fn parse(source: &str, name: &str) -> Result<Self, RoutesError> {
        Self::parse_within(source, name, &ReadLimits::default())
    }

    /// Parses and validates a document, refusing it first if it is outside `limits`.
    pub fn parse_within(source: &str, name: &str, limits: &ReadLimits) -> Result<Self, RoutesError> {
        let json = looks_like_json(source);
        limits::check(source, name, limits, json)?;
        let file: RoutesFile = if json {
            // JSON is YAML, but serde_json reads it about ten times faster than a YAML
            // parser: what generated routes files at the scale of 10,000 functions are.
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(source))
                .map_err(|e| RoutesError::from_json(&e, name))?
        } else {
            serde_norway::from_str(source).map_err(|e| RoutesError::from_serde(&e, name))?
        };
        Self::new(file).map_err(|issues| {
            let index = LineIndex::new(source);
            RoutesError {
                problems: issues
                    .into_iter()
                    .map(|issue| Problem {
                        file: name.to_owned(),
                        line: index.line_of(&issue.path),
                        path: issue.path,
                        message: issue.message,
                    })
                    .collect(),
            }
        })
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path, limits: &ReadLimits) -> Result<Self, RoutesError> {
        let name = display_name(path);
        let source = text_within(read_within(path, limits)?, &name, limits)?;
        Self::parse_within(&source, &name, limits)
    }

    pub fn spec(&self) -> &RoutesFile {
        &self.0
    }
}

/// Reads the file at `path`, at most one byte beyond `limits` (so a huge file costs no more
/// memory than the limit); only I/O fails here, the content is judged by [`text_within`].
pub fn read_within(path: &Path, limits: &ReadLimits) -> Result<Vec<u8>, RoutesError> {
    use std::io::Read;
    let unreadable = |error: std::io::Error| RoutesError::unreadable(path, &error);
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(cap(limits)).read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(bytes)
}

/// How many bytes of a file are read: one more than the limit tells "too large" apart.
pub fn cap(limits: &ReadLimits) -> u64 {
    u64::try_from(limits.max_bytes).unwrap_or(u64::MAX).saturating_add(1)
}

/// The bytes read as routes text: refused when over the size limit or not UTF-8.
pub fn text_within(bytes: Vec<u8>, name: &str, limits: &ReadLimits) -> Result<String, RoutesError> {
    if bytes.len() > limits.max_bytes {
        return Err(limits::too_large(name, limits));
    }
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        RoutesError::single(name, None, "", format!("not UTF-8 text (invalid byte at offset {offset})"))
    })
}

/// A document whose first significant character opens a JSON object.
fn looks_like_json(source: &str) -> bool {
    source.trim_start_matches('\u{feff}').trim_start().starts_with('{')
}

/// The file name operators recognise in error messages (`routes.yaml`, not a long path).
pub fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

// === impl RoutesError ===

impl RoutesError {
    pub fn single(file: &str, line: Option<usize>, path: &str, message: String) -> Self {
        RoutesError { problems: vec![Problem { file: file.to_owned(), line, path: path.to_owned(), message }] }
    }

    /// The routes file at `path` could not be read.
    pub fn unreadable(path: &Path, error: &std::io::Error) -> Self {
        RoutesError::single(&display_name(path), None, "", format!("cannot read: {error}"))
    }

    fn from_json(error: &serde_path_to_error::Error<serde_json::Error>, file: &str) -> Self {
        // serde_json appends " at line L column C"; the line goes in our prefix instead.
        let inner = error.inner();
        let text = inner.to_string();
        let message = text.find(" at line ").map_or(text.as_str(), |cut| &text[..cut]).to_owned();
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        RoutesError::single(file, Some(inner.line()), &path, message)
    }

    fn from_serde(error: &serde_norway::Error, file: &str) -> Self {
        let line = error.location().map(|l| l.line());
        // serde_norway appends " at line L column C"; the line is already in our prefix.
        let text = error.to_string();
        let message = match text.find(" at line ") {
            Some(cut) => text[..cut].to_owned(),
            None => text,
        };
        // Its messages read "functions[0].aliases[1]: unknown field `x`, expected …".
        let (path, message) = match message.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
            _ => (String::new(), message),
        };
        RoutesError { problems: vec![Problem { file: file.to_owned(), line, path, message }] }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RoutesError {}
