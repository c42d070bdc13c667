//! `/health/cluster` on a real multi-node cluster on one machine: nodes on 127.0.0.x behind a
//! Classic ELB and a target group in the moto emulator (which checks our signatures), each
//! node told its instance id by a metadata stub.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use common::aws::{
    canned_server, container_endpoint, hanging_listener, ids, node_with_aws, node_with_hung_aws,
    scripted_server, wait_for_membership, ContainerCredentials, ImdsConfig, ImdsStub, Moto,
    MotoCluster, THROTTLING,
};
use common::{free_port, Service, Signal};

#[test]
fn every_node_lists_the_whole_cluster_through_elb_and_target_group() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let c = MotoCluster::new(&ips);
    let nodes = c.elb_nodes(&ips);
    let all: BTreeSet<String> = ips.iter().map(|ip| c.id(ip)).collect();
    for (node, _) in &nodes {
        wait_for_membership(node);
    }
    for (node, _) in &nodes {
        let started = Instant::now();
        let r = node.get("/health/cluster");
        println!(
            "3 healthy nodes: /health/cluster in {:?}",
            started.elapsed()
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(ids(&body, "node_healths"), all);
        assert!(body["unreachable"].as_array().unwrap().is_empty());
    }
    // A node that is not itself a target, discovering through the target group.
    let tg = c.target_group.clone();
    let (outsider, _imds) = c.node("127.0.0.9", ("TARGET_GROUP_ARN", &tg), &[]);
    wait_for_membership(&outsider);
    let body = outsider.get("/health/cluster").json();
    assert_eq!(ids(&body, "node_healths"), all);
}

#[test]
fn stopped_killed_and_hung_nodes() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let c = MotoCluster::new(&ips);
    let elb = c.elb.clone();
    let deadline = [
        ("CLUSTER_PEER_TIMEOUT_MS", "700"),
        ("CLUSTER_DEADLINE_MS", "1500"),
        // The membership changes mid-test: discover on every request.
        ("CLUSTER_MEMBERSHIP_TTL_MS", "0"),
    ];
    let (a, _ia) = c.node(ips[0], ("ELB_NAME", &elb), &deadline);
    let (mut b, _ib) = c.node(ips[1], ("ELB_NAME", &elb), &deadline);
    let (_d, _id) = c.node(ips[2], ("ELB_NAME", &elb), &deadline);
    // 127.0.0.5 accepts connections and never answers.
    let _hung = hanging_listener(c.addr(ips[3]));

    let started = Instant::now();
    let body = a.get("/health/cluster").json();
    let elapsed = started.elapsed();
    println!("4 nodes, one hung: /health/cluster in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        ids(&body, "node_healths"),
        [c.id(ips[0]), c.id(ips[1]), c.id(ips[2])].into()
    );
    let unreachable = body["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1);
    assert_eq!(unreachable[0]["ec2_instance_id"], c.id(ips[3]));
    assert_eq!(unreachable[0]["address"], c.addr(ips[3]).to_string());
    assert!(unreachable[0]["error"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("timeout"));

    // Stopped in EC2: out of service, so not listed at all.
    c.moto.script(&["stop", &c.id(ips[3])]);
    let body = a.get("/health/cluster").json();
    assert!(body["unreachable"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(ids(&body, "node_healths").len(), 3);

    // Killed but still in service: listed as unreachable, with the reason.
    b.signal(Signal::KILL);
    b.wait(Duration::from_secs(5));
    let body = a.get("/health/cluster").json();
    assert_eq!(
        ids(&body, "node_healths"),
        [c.id(ips[0]), c.id(ips[2])].into()
    );
    let unreachable = body["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1);
    assert_eq!(unreachable[0]["ec2_instance_id"], c.id(ips[1]));
}

#[test]
fn the_node_list_is_reused_while_fresh_and_stands_in_when_aws_fails() {
    let ips = ["127.0.0.2", "127.0.0.3"];
    let mut c = MotoCluster::new(&ips);
    let elb = c.elb.clone();
    let ttl = [("CLUSTER_MEMBERSHIP_TTL_MS", "1500")];
    let (a, _ia) = c.node(ips[0], ("ELB_NAME", &elb), &ttl);
    let (_b, _ib) = c.node(ips[1], ("ELB_NAME", &elb), &ttl);
    let all: BTreeSet<String> = ips.iter().map(|ip| c.id(ip)).collect();
    let body = a.get("/health/cluster").json();
    assert_eq!(ids(&body, "node_healths"), all);
    assert!(body.get("stale_membership").is_none(), "{body}");

    // AWS goes away. Within the period the list is reused: no AWS call, nothing stale.
    c.moto.stop();
    let body = a.get("/health/cluster").json();
    assert_eq!(ids(&body, "node_healths"), all);
    assert!(body.get("stale_membership").is_none(), "{body}");

    // After it, discovery fails and the last list stands in, saying how old it is and why.
    std::thread::sleep(Duration::from_millis(1600));
    let r = a.get("/health/cluster");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(ids(&body, "node_healths"), all);
    let stale = &body["stale_membership"];
    assert!(stale["age_seconds"].as_u64().unwrap() >= 1, "{body}");
    assert!(!stale["error"].as_str().unwrap().is_empty(), "{body}");
    // Logged when the discovery ends (at once when refused; if another test has meanwhile
    // taken the port and does not answer, after the discovery's 3 s).
    let start = Instant::now();
    while !a.logs().contains("cluster discovery failed") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", a.logs());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A node that never found a list has nothing to fall back on: 502.
    let (fresh, _if) = c.node("127.0.0.9", ("ELB_NAME", &elb), &ttl);
    fresh
        .get("/health/cluster")
        .assert_error(502, "upstream_error");
}

#[test]
fn endpoint_urls_are_signed_with_the_host_header_sent() {
    // Port 80 named in the URL (ureq and AWS leave the default port out of `Host`), and an
    // IPv6 literal (in brackets, with its port).
    let v6_port = free_port();
    for (listen, url) in [
        (
            "127.0.0.80:80".to_string(),
            "http://127.0.0.80:80".to_string(),
        ),
        (
            format!("[::1]:{v6_port}"),
            format!("http://[::1]:{v6_port}"),
        ),
    ] {
        let moto = Moto::start_at(listen.parse().unwrap(), &url);
        let c = MotoCluster::in_moto(moto, &["127.0.0.2"]);
        let elb = c.elb.clone();
        let (node, _imds) = c.node("127.0.0.2", ("ELB_NAME", &elb), &[]);
        let r = node.get("/health/cluster");
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert_eq!(ids(&r.json(), "node_healths"), [c.id("127.0.0.2")].into());
    }
}

#[test]
fn when_aws_hangs_the_last_list_stands_in_within_the_deadline() {
    let ips = ["127.0.0.2", "127.0.0.3"];
    let c = MotoCluster::new(&ips);
    let elb = c.elb.clone();
    let settings = [
        ("CLUSTER_MEMBERSHIP_TTL_MS", "500"),
        ("CLUSTER_DEADLINE_MS", "2000"),
        ("CLUSTER_PEER_TIMEOUT_MS", "1000"),
    ];
    let (a, _ia) = c.node(ips[0], ("ELB_NAME", &elb), &settings);
    let (_b, _ib) = c.node(ips[1], ("ELB_NAME", &elb), &settings);
    let all: BTreeSet<String> = ips.iter().map(|ip| c.id(ip)).collect();
    assert_eq!(ids(&a.get("/health/cluster").json(), "node_healths"), all);

    // AWS hangs (moto stopped by SIGSTOP). Every answer comes within the deadline, with the
    // list found before.
    c.moto.pause();
    let start = Instant::now();
    let stale = loop {
        let asked = Instant::now();
        let r = a.get("/health/cluster");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(ids(&body, "node_healths"), all);
        if let Some(stale) = body.get("stale_membership") {
            break stale.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never marked stale"
        );
    };
    let error = stale["error"].as_str().unwrap();
    assert!(
        error.contains("cluster discovery has not finished after"),
        "{error}"
    );
    // Meanwhile other routes do not wait.
    let asked = Instant::now();
    assert_eq!(a.get("/").status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));
    c.moto.resume();
}

#[test]
fn a_hung_aws_holds_no_request_past_its_deadline_and_other_routes_stay_free() {
    let (node, _hung) =
        node_with_hung_aws(&[("HTTP_WORKERS", "4"), ("CLUSTER_DEADLINE_MS", "1500")]);
    let deadline = Duration::from_millis(1500);
    std::thread::scope(|scope| {
        let askers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let asked = Instant::now();
                    let r = node.get("/health/cluster");
                    (r, asked.elapsed())
                })
            })
            .collect();
        let asked = Instant::now();
        assert_eq!(node.get("/").status, 200);
        let root = asked.elapsed();
        assert!(root < Duration::from_secs(1), "GET / waited {root:?}");
        for asker in askers {
            let (r, took) = asker.join().unwrap();
            r.assert_error(502, "upstream_error");
            assert!(took < deadline + Duration::from_secs(1), "{took:?}");
        }
    });
}

#[test]
fn a_full_aws_lane_answers_503_at_once_and_head_says_what_get_would() {
    let (node, _hung) = node_with_hung_aws(&[
        ("CLUSTER_MAX_REQUESTS", "1"),
        ("CLUSTER_DEADLINE_MS", "1500"),
    ]);
    // Two at once into a lane of one: the first waits for AWS until the deadline (502), the
    // second is refused at once (503 overloaded, nothing done). HEAD goes the same way.
    for method in ["GET", "HEAD"] {
        let mut answers: Vec<common::Response> = std::thread::scope(|scope| {
            let both: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| node.request(method, "/health/cluster", &[])))
                .collect();
            both.into_iter().map(|h| h.join().unwrap()).collect()
        });
        answers.sort_by_key(|r| r.status);
        let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 503], "{method}");
        assert_eq!(answers[1].header("retry-after"), Some("1"), "{method}");
        if method == "GET" {
            answers[0].assert_error(502, "upstream_error");
            answers[1].assert_error(503, "overloaded");
        }
    }
}

#[test]
fn a_wrong_secret_is_refused_by_aws_and_surfaces_as_502() {
    let c = MotoCluster::new(&["127.0.0.2"]);
    let elb = c.elb.clone();
    let (node, _imds) = c.node(
        "127.0.0.2",
        ("ELB_NAME", &elb),
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    let r = node.get("/health/cluster");
    r.assert_error(502, "upstream_error");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains("not-the-secret"));
    assert!(!node.logs().contains("not-the-secret"));
    assert!(!node.logs().contains(&c.moto.secret));
}

#[test]
fn credentials_and_region_from_instance_metadata_v2_and_v1() {
    let c = MotoCluster::new(&["127.0.0.2"]);
    let role = c.moto.script(&["role-credentials"]);
    let text = |k: &str| role[k].as_str().unwrap().to_owned();
    for v1_only in [false, true] {
        let imds = ImdsStub::start(ImdsConfig {
            instance_id: c.id("127.0.0.2"),
            region: "us-east-1".into(),
            credentials: Some((text("key"), text("secret"), text("token"))),
            v1_only,
        });
        let env = [
            ("AWS_ENDPOINT_URL", c.moto.url.as_str()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url.as_str()),
            ("ELB_NAME", c.elb.as_str()),
            ("DEBUG", "false"),
        ];
        let node = Service::start_at(c.addr("127.0.0.2"), &env);
        let r = node.get("/health/cluster");
        assert_eq!(r.status, 200, "v1_only={v1_only}: {}", r.text());
        assert_eq!(ids(&r.json(), "node_healths"), [c.id("127.0.0.2")].into());
        assert!(imds.token_puts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        let tokenless = imds
            .tokenless_gets
            .load(std::sync::atomic::Ordering::SeqCst);
        if v1_only {
            assert!(tokenless > 0, "IMDSv1 fallback not used");
        } else {
            assert_eq!(tokenless, 0, "IMDSv2 GETs must carry the token");
        }
        drop(node);
    }
}

#[test]
fn credentials_from_the_ecs_container_endpoint() {
    let c = MotoCluster::new(&["127.0.0.2"]);
    let role = c.moto.script(&["role-credentials"]);
    let text = |k: &str| role[k].as_str().unwrap().to_owned();
    let (url, refused, _) = container_endpoint(ContainerCredentials {
        credentials: (text("key"), text("secret"), text("token")),
        authorization: "Bearer ecs-agent-token",
        expiration: "2099-01-01T00:00:00Z".into(),
        answers: usize::MAX,
    });
    let env = [
        ("AWS_ENDPOINT_URL", c.moto.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.as_str()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "Bearer ecs-agent-token",
        ),
        ("ELB_NAME", c.elb.as_str()),
        ("DEBUG", "false"),
    ];
    let node = Service::start_at(c.addr("127.0.0.2"), &env);
    let r = node.get("/health/cluster");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["node_healths"].as_array().unwrap().len(), 1);
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!node.logs().contains(&text("secret")));
    assert!(!node.logs().contains("ecs-agent-token"));
}

#[test]
fn a_failed_credential_refresh_keeps_the_cached_credentials() {
    let c = MotoCluster::new(&["127.0.0.2"]);
    let role = c.moto.script(&["role-credentials"]);
    let text = |k: &str| role[k].as_str().unwrap().to_owned();
    // Four minutes left: inside the refresh margin, so every use tries a refresh, and the
    // endpoint fails every call after its first.
    let expires = SystemTime::now() + Duration::from_secs(240);
    let (url, _, calls) = container_endpoint(ContainerCredentials {
        credentials: (text("key"), text("secret"), text("token")),
        authorization: "Bearer ecs-agent-token",
        expiration: humantime::format_rfc3339_seconds(expires).to_string(),
        answers: 1,
    });
    let env = [
        ("AWS_ENDPOINT_URL", c.moto.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.as_str()),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "Bearer ecs-agent-token",
        ),
        ("ELB_NAME", c.elb.as_str()),
        // Every request discovers, so every request needs credentials.
        ("CLUSTER_MEMBERSHIP_TTL_MS", "0"),
        ("DEBUG", "false"),
    ];
    let node = Service::start_at(c.addr("127.0.0.2"), &env);
    for _ in 0..3 {
        let r = node.get("/health/cluster");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json().get("stale_membership").is_none(), "{}", r.text());
    }
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "no refresh was tried"
    );
    let logs = node.logs();
    assert!(
        logs.contains("could not refresh the AWS credentials"),
        "{logs}"
    );
    assert!(!logs.contains(&text("secret")) && !logs.contains("ecs-agent-token"));
}

#[test]
fn sixteen_nodes_with_one_hung_answer_within_the_deadline() {
    let ips: Vec<String> = (2..=17).map(|i| format!("127.0.0.{i}")).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let c = MotoCluster::new(&ip_refs);
    let elb = c.elb.clone();
    let deadline = [
        ("CLUSTER_PEER_TIMEOUT_MS", "1000"),
        ("CLUSTER_DEADLINE_MS", "2000"),
    ];
    let nodes: Vec<_> = ip_refs[..15]
        .iter()
        .map(|ip| c.node(ip, ("ELB_NAME", &elb), &deadline))
        .collect();
    wait_for_membership(&nodes[0].0);
    let _hung = hanging_listener(c.addr(ip_refs[15]));
    let mut timings = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let body = nodes[0].0.get("/health/cluster").json();
        timings.push(started.elapsed());
        assert_eq!(ids(&body, "node_healths").len(), 15, "{body}");
        assert_eq!(body["unreachable"].as_array().unwrap().len(), 1);
    }
    println!("16 nodes, one hung (peer timeout 1 s): /health/cluster took {timings:?}");
    assert!(
        timings.iter().all(|t| *t < Duration::from_secs(3)),
        "{timings:?}"
    );
}

/// How many `/health` requests `node` answered 200, from its metrics.
fn health_requests(node: &Service) -> u64 {
    let metrics = node.get("/metrics").text();
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("hello_http_requests_total{route=\"/health\",status=\"200\"} ")
        })
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn concurrent_requests_share_one_round_of_asking_the_peers() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let c = MotoCluster::new(&ips);
    let nodes = c.elb_nodes(&ips);
    let asked = &nodes[0].0;
    wait_for_membership(asked);
    let before: Vec<u64> = nodes[1..].iter().map(|(n, _)| health_requests(n)).collect();
    let threads = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };
    let idle_threads = threads(asked.pid());
    let barrier = std::sync::Barrier::new(40);
    let busiest = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..40)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let r = asked.get("/health/cluster");
                    assert_eq!(r.status, 200, "{}", r.text());
                    assert_eq!(ids(&r.json(), "node_healths").len(), 3);
                    threads(asked.pid())
                })
            })
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).max()
    });
    // Each peer asked once per round (a round's answers serve every request for a second),
    // and no thread started per peer per request: at most one per request in flight, the AWS
    // lane's blocking thread that answers it.
    for ((node, _), before) in nodes[1..].iter().zip(before) {
        let asked_times = health_requests(node) - before;
        assert!(
            (1..=5).contains(&asked_times),
            "a peer was asked {asked_times} times"
        );
    }
    let busiest = busiest.unwrap();
    assert!(
        busiest <= idle_threads + 40,
        "{idle_threads} threads became {busiest}"
    );
}

#[test]
fn debug_mode_makes_no_metadata_calls() {
    let imds = ImdsStub::start(ImdsConfig {
        instance_id: "i-should-not-be-asked".into(),
        region: "us-east-1".into(),
        credentials: None,
        v1_only: false,
    });
    let node = Service::start(&[
        ("DEBUG", "true"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.get("/health").json()["ec2_instance_id"], "local");
    assert_eq!(imds.token_puts.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        imds.tokenless_gets
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn a_peer_answering_garbage_is_named_and_aws_throttling_is_a_502() {
    let c = MotoCluster::new(&["127.0.0.2", "127.0.0.6"]);
    let elb = c.elb.clone();
    let (node, _imds) = c.node("127.0.0.2", ("ELB_NAME", &elb), &[]);
    let _garbage = canned_server(c.addr("127.0.0.6"), "200 OK", "not json at all");
    let body = node.get("/health/cluster").json();
    assert_eq!(ids(&body, "node_healths"), [c.id("127.0.0.2")].into());
    let unreachable = body["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{body}");
    assert_eq!(unreachable[0]["ec2_instance_id"], c.id("127.0.0.6"));
    assert!(
        unreachable[0]["error"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{body}"
    );

    // An ELB endpoint that throttles, answering AWS's documented error document.
    let throttling: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _aws = canned_server(throttling, "400 Bad Request", THROTTLING);
    let endpoint = format!("http://{throttling}");
    let (throttled, _imds2) = c.node(
        "127.0.0.3",
        ("ELB_NAME", &elb),
        &[("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING", &endpoint)],
    );
    let started = Instant::now();
    let r = throttled.get("/health/cluster");
    assert!(started.elapsed() < Duration::from_secs(3));
    r.assert_error(502, "upstream_error");
    assert_eq!(
        r.json()["error"]["message"],
        "AWS answered 400 Throttling: Rate exceeded"
    );
}

/// A `DescribeTargetHealth` page with no healthy target and `marker` as `NextMarker`.
fn target_health_page(marker: &str) -> String {
    format!(
        "<DescribeTargetHealthResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">\
         <DescribeTargetHealthResult><TargetHealthDescriptions/><NextMarker>{marker}</NextMarker>\
         </DescribeTargetHealthResult></DescribeTargetHealthResponse>"
    )
}

#[test]
fn listings_that_page_in_circles_or_without_end_fail_with_the_reason() {
    let target_group = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/hello/1";
    let circles: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_circles, circle_calls) = scripted_server(circles, |n| {
        ("200 OK".into(), target_health_page(["a", "b"][n % 2]))
    });
    let endless: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_endless, endless_calls) = scripted_server(endless, |n| {
        ("200 OK".into(), target_health_page(&format!("m{n}")))
    });
    for (aws, calls, reason, pages) in [
        (
            circles,
            &circle_calls,
            "points back to marker \"a\", already followed",
            3,
        ),
        (
            endless,
            &endless_calls,
            "has more than MAX_PAGES (100) pages",
            100,
        ),
    ] {
        // Time enough for a hundred pages on a busy machine.
        let node = node_with_aws(
            &format!("http://{aws}"),
            &[
                ("ELB_NAME", ""),
                ("TARGET_GROUP_ARN", target_group),
                ("CLUSTER_DEADLINE_MS", "20000"),
            ],
        );
        // Until the discovery ends, answers say it has not finished.
        let start = Instant::now();
        loop {
            let r = node.get("/health/cluster");
            r.assert_error(502, "upstream_error");
            let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
            if message.contains(reason) {
                break;
            }
            assert!(message.contains("has not finished"), "{message}");
            assert!(start.elapsed() < Duration::from_secs(30), "{message}");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), pages);
    }
}

#[test]
fn text_from_aws_is_escaped_in_text_logs() {
    // A proxy or load balancer in front of AWS answering with text, not an AWS error document.
    let aws: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let body = "upstream \x1b[31mbusy\x1b[0m\r\n2026-01-01T00:00:00.000Z ERROR forged line";
    let (_aws, _) = canned_server(aws, "503 Service Unavailable", body);
    let node = node_with_aws(&format!("http://{aws}"), &[]);
    let r = node.get("/health/cluster");
    r.assert_error(502, "upstream_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\x1b[31mbusy"));
    let logs = node.logs();
    assert!(
        logs.contains("upstream \\u{1b}[31mbusy\\u{1b}[0m\\r\\n2026"),
        "{logs}"
    );
    assert!(!logs.contains('\x1b') && !logs.contains('\r'), "{logs:?}");
    assert!(
        logs.lines()
            .all(|l| !l.starts_with("2026-01-01T00:00:00.000Z")),
        "{logs}"
    );
}
