//! The ELB and EC2 response parsers, and the AWS error document reader, over arbitrary text.
//! Invariants: no panic; what they return comes from the text.
#![no_main]

use hello::aws::{ec2, elb, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ids) = elb::in_service(text) {
        for id in ids {
            assert!(text.contains(id.as_str()) || id.is_empty() || text.contains('&'));
        }
    }
    let _ = elb::instance_port(text);
    let _ = elb::parse_target_health(text);
    let _ = ec2::parse_instances(text);
    let _ = xml::error(400, text);
});
