//! Reading Prometheus' text format in tests.

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

fn parse_labels(s: &str) -> Vec<(String, String)> {
    // Label values here never hold `",` or escaped quotes, so a split will do.
    s.split("\",")
        .filter_map(|pair| {
            let (k, v) = pair.split_once("=\"")?;
            Some((k.trim().to_owned(), v.trim_end_matches('"').to_owned()))
        })
        .collect()
}

/// Every sample in a scrape.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)),
                None => (series, Vec::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
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
}
