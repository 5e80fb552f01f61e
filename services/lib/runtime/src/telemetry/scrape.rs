//! Reading Prometheus' text format: another service's `GET /metrics`, as
//! the gateway reads the order service's for the dashboard's chart (and the
//! tests read every service's).

/// One sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `a="x",b="y\"z"` (the part between the braces); None when malformed.
fn parse_labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() {
            return Some(labels);
        }
        let (key, rest) = s.split_once('=')?;
        let mut chars = rest.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        // `end` indexes into `rest` after its opening quote.
        s = &rest[end + 2..];
    }
}

/// One line, without comments; None for anything else.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.split_once('{') {
        Some((name, rest)) => {
            let close = rest.rfind('}')?;
            (name, parse_labels(&rest[..close])?, &rest[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    if name.trim().is_empty() {
        return None;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// Every sample in a scrape; lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// The samples of `name` that carry (at least) `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect()
}

/// The sum of the samples of `name` with `labels`; None when there is none.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(samples, name, labels);
    (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
}

/// A histogram's cumulative buckets `(le, count)` for the series with
/// `labels`, in ascending `le` (`+Inf` last); empty when there is none.
pub fn buckets(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = find(samples, &format!("{name}_bucket"), labels)
        .into_iter()
        .filter_map(|s| Some((s.label("le")?.parse::<f64>().ok()?, s.value)))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_with_and_without_labels() {
        let text = "# TYPE a counter\na{x=\"1\",path=\"/orders/:id\"} 3\nb 0.5\nc{le=\"+Inf\"} 2\n";
        let s = parse(text);
        assert_eq!(value(&s, "a", &[("path", "/orders/:id")]), Some(3.0));
        assert_eq!(value(&s, "b", &[]), Some(0.5));
        assert_eq!(value(&s, "c", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(value(&s, "a", &[("x", "2")]), None);
    }

    #[test]
    fn reads_escaped_label_values_and_timestamps() {
        let text = "a{v=\"x\\\",y\",w=\"back\\\\slash\\nline\",} 7 1700000000000\n";
        let s = parse(text);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].label("v"), Some("x\",y"));
        assert_eq!(s[0].label("w"), Some("back\\slash\nline"));
        assert_eq!(s[0].value, 7.0);
    }

    #[test]
    fn skips_what_it_cannot_read() {
        let s = parse("a{v=\"open} 1\nb{} x\nc 1\n{} 2\nd{v=x} 3\n");
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn histogram_buckets_in_order() {
        let text = "h_bucket{p=\"/x\",le=\"+Inf\"} 4\nh_bucket{p=\"/x\",le=\"0.5\"} 3\n\
                    h_bucket{p=\"/x\",le=\"0.1\"} 1\nh_bucket{p=\"/y\",le=\"0.1\"} 9\n";
        let s = parse(text);
        assert_eq!(
            buckets(&s, "h", &[("p", "/x")]),
            [(0.1, 1.0), (0.5, 3.0), (f64::INFINITY, 4.0)]
        );
    }
}
