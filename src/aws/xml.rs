//! Reading AWS XML answers by element local name, ignoring namespaces and element order.

use roxmltree::{Document, Node};

use super::AwsError;

pub fn parse(text: &str) -> Result<Document<'_>, AwsError> {
    Document::parse(text).map_err(|e| AwsError::Malformed(format!("invalid XML: {e}")))
}

/// The first child element of `node` with this local name.
pub fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// The trimmed text of the first child element with this local name.
pub fn child_text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).and_then(|c| c.text()).map(str::trim)
}

/// Every descendant element (the node included) with this local name.
pub fn descendants<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.descendants()
        .filter(move |d| d.is_element() && d.tag_name().name() == name)
}

/// The error in an AWS error document, in either shape: `ErrorResponse/Error/Code` (ELB) or
/// `Response/Errors/Error/Code` (EC2).
pub fn error(status: u16, text: &str) -> AwsError {
    let found = Document::parse(text).ok().and_then(|doc| {
        let error = descendants(doc.root(), "Error").next()?;
        Some((
            child_text(error, "Code")?.to_owned(),
            child_text(error, "Message").unwrap_or("").to_owned(),
        ))
    });
    match found {
        Some((code, message)) => AwsError::Api {
            status,
            code,
            message,
        },
        None => AwsError::unexplained(status, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_error_shapes() {
        let elb = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/">
            <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
            <RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(
            error(400, elb),
            AwsError::Api {
                status: 400,
                code: "Throttling".into(),
                message: "Rate exceeded".into()
            }
        );
        let ec2 = r#"<?xml version="1.0"?><Response><Errors><Error><Message>no</Message><Code>AuthFailure</Code></Error></Errors><RequestID>y</RequestID></Response>"#;
        assert!(matches!(error(401, ec2), AwsError::Api { code, .. } if code == "AuthFailure"));
        assert!(
            matches!(error(503, "<html>busy</html>"), AwsError::Api { code, .. } if code == "HTTP503")
        );
    }
}
