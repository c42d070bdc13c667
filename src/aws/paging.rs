//! Following a listing's pages (`NextMarker`, `nextToken`) to its end, with an end guaranteed: a
//! listing stops at an empty or absent marker, and fails on a marker it has already followed
//! or past `MAX_PAGES` pages, so an endpoint that pages wrongly cannot keep discovery going.

use std::collections::HashSet;

use super::AwsError;

/// Most pages one listing may take. One load balancer's nodes fit in a page or two (AWS pages
/// `DescribeInstances` by up to 1,000 instances, and `DescribeTargetHealth` answers a target
/// group whole); a hundred means an endpoint that does not page as AWS does.
pub const MAX_PAGES: usize = 100;

/// Every item of a listing. `page` fetches the page after a marker (the first page for `None`)
/// and returns its items with the next marker, if any.
pub fn collect<T>(
    action: &str,
    mut page: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), AwsError>,
) -> Result<Vec<T>, AwsError> {
    let mut items = Vec::new();
    let mut followed = HashSet::new();
    let mut marker: Option<String> = None;
    for number in 1..=MAX_PAGES {
        let (mut found, next) = page(marker.as_deref())?;
        items.append(&mut found);
        match next.filter(|m| !m.is_empty()) {
            None => return Ok(items),
            Some(m) if followed.contains(&m) => {
                let shown: String = m.chars().take(64).collect();
                return Err(AwsError::Malformed(format!(
                    "{action} page {number} points back to marker {shown:?}, already followed"
                )));
            }
            Some(m) => {
                followed.insert(m.clone());
                marker = Some(m);
            }
        }
    }
    Err(AwsError::Malformed(format!(
        "{action} has more than MAX_PAGES ({MAX_PAGES}) pages"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages whose markers come from `markers` in turn; records the markers asked for.
    fn listing(
        markers: impl IntoIterator<Item = Option<String>>,
    ) -> (Result<Vec<usize>, AwsError>, Vec<Option<String>>) {
        let mut asked = Vec::new();
        let mut next = markers.into_iter();
        let result = collect("DescribeThings", |marker| {
            asked.push(marker.map(str::to_owned));
            Ok((vec![asked.len()], next.next().flatten()))
        });
        (result, asked)
    }

    fn some(marker: &str) -> Option<String> {
        Some(marker.to_owned())
    }

    #[test]
    fn follows_markers_to_an_empty_or_absent_one() {
        let (items, asked) = listing([some("a"), some("b"), None]);
        assert_eq!(items.unwrap(), [1, 2, 3]);
        assert_eq!(asked, [None, some("a"), some("b")]);
        let (items, _) = listing([some("a"), some("")]);
        assert_eq!(items.unwrap(), [1, 2]);
    }

    #[test]
    fn a_marker_already_followed_is_an_error_not_a_loop() {
        // Alternating markers: a check of the last marker alone would loop for ever.
        let (result, asked) = listing((0..1000).map(|i| some(["a", "b"][i % 2])));
        let error = result.unwrap_err().to_string();
        assert!(error.contains("DescribeThings page 3"), "{error}");
        assert!(error.contains("\"a\", already followed"), "{error}");
        assert_eq!(asked.len(), 3);
        let (result, _) = listing([some("a"), some("a")]);
        assert!(result.is_err());
    }

    #[test]
    fn stops_at_the_page_cap_and_names_it() {
        let (result, asked) = listing((0..).map(|i| some(&format!("m{i}"))));
        assert_eq!(asked.len(), MAX_PAGES);
        assert_eq!(
            result.unwrap_err().to_string(),
            "unexpected answer from AWS: DescribeThings has more than MAX_PAGES (100) pages"
        );
    }

    #[test]
    fn a_failed_page_fails_the_listing() {
        let mut calls = 0;
        let result: Result<Vec<u8>, _> = collect("DescribeThings", |_| {
            calls += 1;
            match calls {
                1 => Ok((vec![1], Some("a".into()))),
                _ => Err(AwsError::Transport("gone".into())),
            }
        });
        assert_eq!(result, Err(AwsError::Transport("gone".into())));
    }
}
