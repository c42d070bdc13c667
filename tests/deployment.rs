//! `deployment/` names only metrics that something in this stack produces: the dashboard's body
//! (rendered by Terraform itself from `deployment/dashboard/`, which needs no provider) is valid
//! JSON whose every metric is one of the service's embedded-metric names or an AWS metric of the
//! load balancer, ECS service or Redis nodes created here, with those resources' dimensions; and
//! every alarm watches such a metric.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const REGION: &str = "eu-west-1";
const LOAD_BALANCER: &str = "app/hello/0123456789abcdef";
const CLUSTER: &str = "hello-cluster";
const SERVICE: &str = "hello-service";
const NAMESPACE: &str = "hello-test";
const REDIS: [&str; 2] = ["hello-001", "hello-002"];
const ALARMS: [&str; 2] = [
    "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:hello-5xx-rate",
    "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:hello-store-unavailable",
];

fn deployment() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deployment")
}

/// The AWS metrics this stack's resources publish and its dashboard and alarms may use.
fn aws_metrics(namespace: &str) -> Option<&'static [&'static str]> {
    match namespace {
        "AWS/ApplicationELB" => Some(&[
            "RequestCount",
            "HTTPCode_Target_5XX_Count",
            "HTTPCode_ELB_5XX_Count",
            "TargetResponseTime",
            "UnHealthyHostCount",
            "HealthyHostCount",
        ]),
        "AWS/ECS" => Some(&["CPUUtilization", "MemoryUtilization"]),
        "AWS/ElastiCache" => Some(&[
            "EngineCPUUtilization",
            "DatabaseMemoryUsagePercentage",
            "CurrConnections",
            "Evictions",
            "ReplicationLag",
        ]),
        _ => None,
    }
}

fn terraform(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("terraform")
        .current_dir(dir)
        .args(args)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run terraform ({e}): install it (https://developer.hashicorp.com/terraform/install)"
            )
        });
    assert!(
        out.status.success(),
        "terraform {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The dashboard body as Terraform renders it for the names above.
fn render_dashboard() -> Value {
    let dir = std::env::temp_dir().join(format!("hello-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(deployment().join("dashboard/main.tf"), dir.join("main.tf")).unwrap();
    let list = |items: &[&str]| serde_json::to_string(items).unwrap();
    let vars = [
        format!("region={REGION}"),
        format!("load_balancer={LOAD_BALANCER}"),
        format!("ecs_cluster={CLUSTER}"),
        format!("ecs_service={SERVICE}"),
        format!("namespace={NAMESPACE}"),
        format!("redis_clusters={}", list(&REDIS)),
        format!("alarm_arns={}", list(&ALARMS)),
    ];
    terraform(&dir, &["init", "-input=false", "-no-color"]);
    let mut apply = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
    let var_args: Vec<String> = vars.iter().map(|v| format!("-var={v}")).collect();
    apply.extend(var_args.iter().map(String::as_str));
    terraform(&dir, &apply);
    let body = terraform(&dir, &["output", "-raw", "body"]);
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A dashboard metric `[namespace, name, dimension, value, …, {options}]`, split.
fn metric(entry: &Value) -> (String, String, BTreeMap<String, String>, Value) {
    let items = entry.as_array().expect("a metric is an array");
    let (options, head) = items.split_last().expect("not empty");
    assert!(options.is_object(), "rendering options last: {entry}");
    let strings: Vec<&str> = head
        .iter()
        .map(|v| {
            v.as_str()
                .expect("namespace, name and dimensions are strings")
        })
        .collect();
    assert!(
        strings.len() >= 2 && strings.len().is_multiple_of(2),
        "{entry}"
    );
    let dimensions = strings[2..]
        .chunks(2)
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect();
    (
        strings[0].to_owned(),
        strings[1].to_owned(),
        dimensions,
        options.clone(),
    )
}

#[test]
fn the_dashboard_names_only_metrics_this_stack_produces() {
    let body = render_dashboard();
    let service_metrics: BTreeSet<String> = hello::emf::metric_names().into_iter().collect();
    let widgets = body["widgets"].as_array().expect("widgets");
    let mut shown = BTreeSet::new();
    let mut redis_nodes = BTreeSet::new();
    let mut alarm_widgets = 0;
    for widget in widgets {
        let (x, width) = (
            widget["x"].as_u64().unwrap(),
            widget["width"].as_u64().unwrap(),
        );
        assert!(x + width <= 24, "inside the 24-column grid: {widget}");
        assert!(widget["height"].as_u64().is_some_and(|h| h > 0));
        let properties = &widget["properties"];
        match widget["type"].as_str() {
            Some("alarm") => {
                alarm_widgets += 1;
                assert_eq!(properties["alarms"], serde_json::json!(ALARMS));
            }
            Some("metric") => {
                assert_eq!(properties["region"], REGION);
                assert!(properties["title"].as_str().is_some_and(|t| !t.is_empty()));
                for entry in properties["metrics"].as_array().expect("metrics") {
                    let (namespace, name, dimensions, options) = metric(entry);
                    assert!(options["stat"].is_string(), "a statistic: {entry}");
                    let dims = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
                        pairs
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    };
                    if namespace == NAMESPACE {
                        assert!(service_metrics.contains(&name), "{name}: not emitted");
                        assert!(dimensions.is_empty(), "the service's lines have none");
                    } else {
                        let known = aws_metrics(&namespace)
                            .unwrap_or_else(|| panic!("namespace {namespace}: nothing here"));
                        assert!(known.contains(&name.as_str()), "{namespace} {name}");
                        match namespace.as_str() {
                            "AWS/ApplicationELB" => {
                                assert_eq!(dimensions, dims(&[("LoadBalancer", LOAD_BALANCER)]))
                            }
                            "AWS/ECS" => assert_eq!(
                                dimensions,
                                dims(&[("ClusterName", CLUSTER), ("ServiceName", SERVICE)])
                            ),
                            _ => {
                                let node = &dimensions["CacheClusterId"];
                                assert!(REDIS.contains(&node.as_str()), "{node}");
                                assert_eq!(dimensions.len(), 1);
                                redis_nodes.insert(node.clone());
                            }
                        }
                    }
                    shown.insert(name);
                }
            }
            other => panic!("unexpected widget type {other:?}"),
        }
    }
    assert_eq!(alarm_widgets, 1);
    assert_eq!(redis_nodes, REDIS.iter().map(|n| n.to_string()).collect());
    // What the issue asks to see at a glance.
    for wanted in [
        "RequestCount",
        "HTTPCode_Target_5XX_Count",
        "HTTPCode_ELB_5XX_Count",
        "TargetResponseTime",
        "StoreUnavailable",
        "HelloLatencyP50",
        "HelloLatencyP99",
        "CPUUtilization",
        "MemoryUtilization",
        "EngineCPUUtilization",
        "DatabaseMemoryUsagePercentage",
        "CurrConnections",
        "Evictions",
    ] {
        assert!(
            shown.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

#[test]
fn every_alarm_watches_a_metric_this_stack_produces() {
    let service_metrics = hello::emf::metric_names();
    let mut watched = Vec::new();
    for entry in std::fs::read_dir(deployment()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "tf") {
            continue;
        }
        // Alarms only: a WAF rule's `metric_name` names the metric it publishes, not one it
        // watches.
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("\"aws_cloudwatch_metric_alarm\"") {
            continue;
        }
        // Within an alarm (or one of its metric queries), `namespace` comes before `metric_name`.
        let mut namespace = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "namespace" => namespace = Some(value.to_owned()),
                "metric_name" => {
                    let namespace = namespace.take().expect("a namespace before metric_name");
                    watched.push((namespace, value.to_owned()));
                }
                _ => {}
            }
        }
    }
    assert!(watched.len() >= 10, "{watched:?}");
    for (namespace, name) in &watched {
        let known = if namespace == "local.emf_namespace" {
            service_metrics.contains(name)
        } else {
            aws_metrics(namespace).is_some_and(|names| names.contains(&name.as_str()))
        };
        assert!(
            known,
            "an alarm watches {namespace} {name}, which nothing here produces"
        );
    }
    for signal in ["StoreUnavailable", "HelloLatencyP99"] {
        assert!(
            watched
                .iter()
                .any(|(ns, name)| ns == "local.emf_namespace" && name == signal),
            "no alarm on the service's {signal}"
        );
    }
    for (namespace, signal) in [
        ("AWS/ApplicationELB", "HealthyHostCount"),
        ("AWS/ElastiCache", "Evictions"),
        ("AWS/ElastiCache", "ReplicationLag"),
    ] {
        assert!(
            watched
                .iter()
                .any(|(ns, name)| ns == namespace && name == signal),
            "no alarm on {namespace} {signal}"
        );
    }
    // The task definition publishes the service's metrics under the namespace alarms watch.
    let ecs = std::fs::read_to_string(deployment().join("ecs.tf")).unwrap();
    assert!(ecs.contains(r#"{ name = "METRICS_EMF", value = "true" }"#));
    assert!(ecs.contains(r#"{ name = "METRICS_EMF_NAMESPACE", value = local.emf_namespace }"#));
}

/// `terraform plan` of `deployment/variables.tf` alone (no provider, so offline) with `args`.
fn plan_variables(args: &[&str]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!(
        "hello-variables-{}-{}",
        std::process::id(),
        args.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(deployment().join("variables.tf"), dir.join("variables.tf")).unwrap();
    terraform(&dir, &["init", "-input=false", "-no-color"]);
    let out = Command::new("terraform")
        .current_dir(&dir)
        .args(["plan", "-input=false", "-no-color"])
        .args(args)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform plan");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn plain_http_only_on_purpose() {
    let refused = plan_variables(&[]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr).replace('\n', " ");
    assert!(why.contains("Set certificate_arn"), "{why}");
    for args in [
        &["-var", "plain_http=true"][..],
        &[
            "-var",
            "certificate_arn=arn:aws:acm:us-east-1:123456789012:certificate/x",
        ][..],
    ] {
        let out = plan_variables(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
