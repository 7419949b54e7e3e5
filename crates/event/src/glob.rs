//! Type-glob patterns (`PAYMENT_*`, `*`, `*.created`) and the filters built from them.
//!
//! A pattern is made of event-type characters and `*`, which stands for any run of characters,
//! the empty one included. There is no other wildcard. Patterns are compiled once, so matching
//! an event type is a prefix/suffix comparison in the common cases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, check_chars};
use crate::event_type::{EventType, MAX_TYPE_LEN, is_type_byte};

const PATTERN_CHARSET: &str = "A-Z a-z 0-9 _ . : - and *";

/// A validated, compiled type-glob.
///
/// ```
/// use nexus_event::Pattern;
/// let p = Pattern::new("PAYMENT_*")?;
/// assert!(p.matches("PAYMENT_RECEIVED"));
/// assert!(!p.matches("MINT_CONFIRMED"));
/// assert!(Pattern::new("*")?.matches("anything"));
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    source: Box<str>,
    compiled: Compiled,
}

#[derive(Clone)]
enum Compiled {
    /// `*`, `**`, ...
    Any,
    /// No `*` at all.
    Exact,
    /// `abc*`
    Prefix(Box<str>),
    /// `*abc`
    Suffix(Box<str>),
    /// `ab*cd`
    PrefixSuffix(Box<str>, Box<str>),
    /// Anything else: literal parts between stars, and whether it starts or ends with a star.
    General {
        parts: Box<[Box<str>]>,
        anchored_start: bool,
        anchored_end: bool,
    },
}

impl Pattern {
    /// Validates and compiles a glob: 1 to 128 characters of the event-type charset plus `*`.
    pub fn new(glob: &str) -> Result<Self, Error> {
        check_chars("pattern", glob, MAX_TYPE_LEN, PATTERN_CHARSET, |b| {
            b == b'*' || is_type_byte(b)
        })?;
        Ok(Pattern {
            source: glob.into(),
            compiled: compile(glob),
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this pattern matches every type (`*`).
    pub fn is_any(&self) -> bool {
        matches!(self.compiled, Compiled::Any)
    }

    /// Whether `subject` matches. The subject is read as a plain string, so a pattern can be
    /// tested against another pattern (a `*` in the subject is just a character).
    pub fn matches(&self, subject: &str) -> bool {
        match &self.compiled {
            Compiled::Any => true,
            Compiled::Exact => subject == &*self.source,
            Compiled::Prefix(p) => subject.starts_with(&**p),
            Compiled::Suffix(s) => subject.ends_with(&**s),
            Compiled::PrefixSuffix(p, s) => {
                subject.len() >= p.len() + s.len()
                    && subject.starts_with(&**p)
                    && subject.ends_with(&**s)
            }
            Compiled::General {
                parts,
                anchored_start,
                anchored_end,
            } => general_match(parts, *anchored_start, *anchored_end, subject),
        }
    }

    /// Whether an event type matches.
    pub fn matches_type(&self, event_type: &EventType) -> bool {
        self.matches(event_type.as_str())
    }
}

fn compile(glob: &str) -> Compiled {
    if glob.bytes().all(|b| b == b'*') {
        return Compiled::Any;
    }
    let stars = glob.bytes().filter(|&b| b == b'*').count();
    let starts = glob.starts_with('*');
    let ends = glob.ends_with('*');
    match (stars, starts, ends) {
        (0, _, _) => Compiled::Exact,
        (1, false, true) => Compiled::Prefix(glob[..glob.len() - 1].into()),
        (1, true, false) => Compiled::Suffix(glob[1..].into()),
        (1, false, false) => {
            let (p, s) = glob.split_once('*').unwrap_or((glob, ""));
            Compiled::PrefixSuffix(p.into(), s.into())
        }
        _ => Compiled::General {
            parts: glob
                .split('*')
                .filter(|p| !p.is_empty())
                .map(Into::into)
                .collect(),
            anchored_start: !starts,
            anchored_end: !ends,
        },
    }
}

/// Matches literal `parts` separated by stars. Greedy leftmost search is exact for globs whose
/// only wildcard is `*`: taking the earliest occurrence of each part leaves the most room for the
/// rest.
fn general_match(parts: &[Box<str>], anchored_start: bool, anchored_end: bool, s: &str) -> bool {
    let mut rest = s;
    let mut parts = parts;
    if anchored_start {
        let Some((first, tail)) = parts.split_first() else {
            return true;
        };
        match rest.strip_prefix(&**first) {
            Some(r) => rest = r,
            None => return false,
        }
        parts = tail;
    }
    let last = if anchored_end {
        match parts.split_last() {
            Some((last, init)) => {
                parts = init;
                Some(last)
            }
            None => None,
        }
    } else {
        None
    };
    for part in parts {
        match rest.find(&**part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    match last {
        Some(last) => rest.ends_with(&**last),
        None => true,
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.source)
    }
}

impl FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Pattern::new(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Pattern::new(s)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Which event types a consumer wants: every type, or those matching any of a set of patterns.
///
/// This is the one filter used wherever Nexus filters by type: bus subscriptions, webhook
/// subscriptions, WebSocket subscriptions, node permissions and reactor triggers.
///
/// ```
/// use nexus_event::{TypeFilter, EventType, WellKnown};
/// let f = TypeFilter::parse(["PAYMENT_*", "MINT_CONFIRMED"])?;
/// assert!(f.matches(&EventType::from(WellKnown::PaymentReceived)));
/// assert!(f.matches(&EventType::from(WellKnown::MintConfirmed)));
/// assert!(!f.matches(&EventType::from(WellKnown::MintFailed)));
/// assert!(TypeFilter::all().matches(&EventType::new("anything.else")?));
/// # Ok::<(), nexus_event::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TypeFilter {
    /// Empty means every type.
    patterns: Box<[Pattern]>,
}

impl TypeFilter {
    /// The filter that lets every type through.
    pub fn all() -> Self {
        TypeFilter::default()
    }

    /// A filter from compiled patterns. A set holding `*`, or an empty set, lets every type through.
    pub fn new(patterns: impl IntoIterator<Item = Pattern>) -> Self {
        let patterns: Vec<Pattern> = patterns.into_iter().collect();
        if patterns.is_empty() || patterns.iter().any(Pattern::is_any) {
            return TypeFilter::all();
        }
        TypeFilter {
            patterns: patterns.into(),
        }
    }

    /// Parses and compiles each glob; the first invalid one is the error.
    pub fn parse<I, S>(globs: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = globs
            .into_iter()
            .map(|g| Pattern::new(g.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TypeFilter::new(patterns))
    }

    /// Whether this filter lets every type through.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns; empty for the filter that lets everything through.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether an event type passes.
    #[inline]
    pub fn matches(&self, event_type: &EventType) -> bool {
        self.matches_str(event_type.as_str())
    }

    /// Whether a string (a type, or another pattern read as a plain string) passes.
    ///
    /// This is how a WebSocket token's scope is checked (API.md section 7): `PAYMENT_*` is
    /// inside a scope of `PAYMENT_*` or `*`, but `*` is not inside `PAYMENT_*`.
    ///
    /// ```
    /// use nexus_event::TypeFilter;
    /// let scope = TypeFilter::parse(["PAYMENT_*"])?;
    /// assert!(scope.matches_str("PAYMENT_*"));
    /// assert!(!scope.matches_str("*"));
    /// assert!(TypeFilter::parse(["*"])?.is_all());
    /// # Ok::<(), nexus_event::Error>(())
    /// ```
    pub fn matches_str(&self, subject: &str) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(subject))
    }
}

impl From<Pattern> for TypeFilter {
    fn from(p: Pattern) -> Self {
        TypeFilter::new([p])
    }
}

impl fmt::Debug for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str("TypeFilter(*)")
        } else {
            f.debug_tuple("TypeFilter").field(&self.patterns).finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious recursive matcher, as the model the compiled one is checked against.
    fn model(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| model(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && model(rest, &s[1..]),
        }
    }

    fn pat(s: &str) -> Pattern {
        Pattern::new(s).expect("test pattern is valid")
    }

    #[test]
    fn compiled_forms() {
        assert!(pat("*").matches(""));
        assert!(pat("**").is_any());
        assert!(pat("PAYMENT_RECEIVED").matches("PAYMENT_RECEIVED"));
        assert!(!pat("PAYMENT_RECEIVED").matches("PAYMENT_RECEIVED2"));
        assert!(pat("PAYMENT_*").matches("PAYMENT_"));
        assert!(pat("*_FAILED").matches("MINT_FAILED"));
        assert!(!pat("*_FAILED").matches("MINT_FAILED_NOT"));
        assert!(pat("MINT_*ED").matches("MINT_CONFIRMED"));
        assert!(
            !pat("ab*ba").matches("aba"),
            "prefix and suffix may not overlap"
        );
        assert!(pat("a*b*c").matches("aXbYc"));
        assert!(!pat("a*b*c").matches("acb"));
        assert!(pat("*a*").matches("banana"));
        assert!(pat("a**b").matches("ab"));
        assert!(pat("*b*b").matches("abab"));
        assert!(!pat("*b*b").matches("abba!"));
    }

    #[test]
    fn invalid_patterns_are_typed_errors() {
        assert!(matches!(
            Pattern::new(""),
            Err(Error::Length {
                field: "pattern",
                ..
            })
        ));
        assert!(matches!(
            Pattern::new("PAY?"),
            Err(Error::Charset {
                field: "pattern",
                found: '?',
                ..
            })
        ));
        assert!(TypeFilter::parse(["A", "b c"]).is_err());
    }

    #[test]
    fn scope_check_reads_patterns_as_strings() {
        // API.md section 7: PAYMENT_* is inside PAYMENT_* and *; * is not inside PAYMENT_*.
        assert!(pat("PAYMENT_*").matches("PAYMENT_*"));
        assert!(pat("*").matches("PAYMENT_*"));
        assert!(!pat("PAYMENT_*").matches("*"));
    }

    #[test]
    fn filters() {
        assert!(TypeFilter::parse(["MINT_*", "*"]).expect("valid").is_all());
        assert!(TypeFilter::new([]).is_all());
        let f = TypeFilter::parse(["MINT_*"]).expect("valid");
        assert!(!f.is_all());
        assert!(f.matches_str("MINT_FAILED"));
        assert!(!f.matches_str("PAYMENT_RECEIVED"));
    }

    fn type_string() -> impl Strategy<Value = String> {
        "[A-C_.]{0,12}"
    }

    fn glob_string() -> impl Strategy<Value = String> {
        "[A-C_*]{1,10}"
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(glob in glob_string(), s in type_string()) {
            let p = pat(&glob);
            prop_assert_eq!(p.matches(&s), model(glob.as_bytes(), s.as_bytes()), "glob {} on {}", glob, s);
        }

        #[test]
        fn literal_pattern_matches_only_itself(t in "[A-Za-z0-9_.:-]{1,40}", other in "[A-Za-z0-9_.:-]{1,40}") {
            let p = pat(&t);
            prop_assert!(p.matches(&t));
            prop_assert_eq!(p.matches(&other), t == other);
        }

        #[test]
        fn prefix_glob_is_starts_with(prefix in "[A-Z_]{0,10}", s in "[A-Z_]{0,16}") {
            let p = pat(&format!("{prefix}*"));
            prop_assert_eq!(p.matches(&s), s.starts_with(&prefix));
        }

        #[test]
        fn starring_out_a_slice_still_matches(s in "[A-Za-z0-9_]{1,30}", a in 0usize..30, b in 0usize..30) {
            let (lo, hi) = (a.min(b).min(s.len()), a.max(b).min(s.len()));
            let glob = format!("{}*{}", &s[..lo], &s[hi..]);
            prop_assert!(pat(&glob).matches(&s), "glob {} on {}", glob, s);
        }

        #[test]
        fn any_valid_type_passes_star(t in "[A-Za-z0-9_.:-]{1,128}") {
            let ty = EventType::new(&t).expect("generated types are valid");
            prop_assert!(pat("*").matches_type(&ty));
            prop_assert!(TypeFilter::all().matches(&ty));
        }
    }
}
