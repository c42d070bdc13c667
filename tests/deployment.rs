//! `deployment/` names only metrics that something in this stack produces: the dashboard's body
//! (rendered by Terraform itself from `deployment/dashboard/`, which needs no provider) is valid
//! JSON whose every metric is one of the service's embedded-metric names or an AWS metric of the
//! load balancer, ECS service or Redis nodes created here, with those resources' dimensions; and
//! every alarm watches such a metric.
//!
//! Then the launch list, statically: what no AWS emulator here can show (alert paths, the
//! counts' protection, limits, regions, the AMI). Values derived from variables are evaluated by
//! Terraform itself (`terraform console` over `variables.tf` and `derived.tf`, which need no
//! provider); the resources' settings are read from the configuration as python-hcl2 parses it
//! (the parser checkov uses, from `.venv-tools`, which `make test` makes).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const REGION: &str = "eu-west-1";
const LOAD_BALANCER: &str = "app/hello/0123456789abcdef";
const CLUSTER: &str = "hello-cluster";
const SERVICE: &str = "hello-service";
const NAMESPACE: &str = "hello-test";
const REDIS: [&str; 2] = ["hello-001", "hello-002"];
const SERVERLESS: &str = "hello-cache";
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
        "AWS/Events" => Some(&["FailedInvocations"]),
        "AWS/ElastiCache" => Some(&[
            "EngineCPUUtilization",
            "DatabaseMemoryUsagePercentage",
            "CurrConnections",
            "Evictions",
            "ReplicationLag",
            // A serverless cache's (dimension clusterId).
            "BytesUsedForCache",
            "ElastiCacheProcessingUnits",
            "ThrottledCmds",
            "SuccessfulWriteRequestLatency",
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

/// The stores the dashboard is rendered for: a node-based one (its nodes), and serverless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Nodes,
    Serverless,
}

/// The dashboard body as Terraform renders it for the names above.
fn render_dashboard(store: Store) -> Value {
    let dir =
        std::env::temp_dir().join(format!("hello-dashboard-{}-{store:?}", std::process::id()));
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
        match store {
            Store::Nodes => format!("redis_clusters={}", list(&REDIS)),
            Store::Serverless => "redis_clusters=[]".to_owned(),
        },
        match store {
            Store::Nodes => "serverless_cache=".to_owned(),
            Store::Serverless => format!("serverless_cache={SERVERLESS}"),
        },
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
    for store in [Store::Nodes, Store::Serverless] {
        dashboard_names_only_metrics_this_stack_produces(store);
    }
}

fn dashboard_names_only_metrics_this_stack_produces(store: Store) {
    let body = render_dashboard(store);
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
                            _ if store == Store::Serverless => {
                                assert_eq!(dimensions, dims(&[("clusterId", SERVERLESS)]))
                            }
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
    let store_metrics: &[&str] = match store {
        Store::Nodes => {
            assert_eq!(redis_nodes, REDIS.iter().map(|n| n.to_string()).collect());
            &[
                "EngineCPUUtilization",
                "DatabaseMemoryUsagePercentage",
                "CurrConnections",
                "Evictions",
            ]
        }
        Store::Serverless => {
            assert!(redis_nodes.is_empty());
            &[
                "BytesUsedForCache",
                "ElastiCacheProcessingUnits",
                "ThrottledCmds",
                "CurrConnections",
            ]
        }
    };
    for wanted in store_metrics {
        assert!(shown.contains(*wanted), "{store:?}: no {wanted}");
    }
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
        "NamesRefused",
        "StoreFull",
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
    let mut tabled = Vec::new();
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
        // An alarm made from a table (`each.value.metric`) watches that table's metrics.
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
                    if value == "each.value.metric" {
                        tabled.push(namespace);
                    } else {
                        watched.push((namespace, value.to_owned()));
                    }
                }
                _ => {}
            }
        }
    }
    // The two store tables (derived.tf), each with the stores that fill it.
    assert_eq!(tabled, ["AWS/ElastiCache", "AWS/ElastiCache"]);
    for (vars, table) in [
        (&[][..], "local.redis_node_alarms"),
        (&["store=serverless"][..], "local.serverless_alarms"),
    ] {
        let alarms = derived(vars, table);
        let alarms = alarms.as_object().unwrap();
        assert!(!alarms.is_empty(), "{table} is empty");
        for alarm in alarms.values() {
            let metric = alarm["metric"].as_str().unwrap().to_owned();
            watched.push(("AWS/ElastiCache".to_owned(), metric));
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
    for signal in [
        "StoreUnavailable",
        "HelloLatencyP99",
        "NamesRefused",
        "StoreFull",
    ] {
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
        ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"),
        ("AWS/Events", "FailedInvocations"),
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

/// A fresh directory holding copies of `files` from `deployment/`, initialised (they need no
/// provider, so this is offline). Each call has its own: the tests run at once.
fn provider_free(files: &[&str]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hello-variables-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in files {
        std::fs::copy(deployment().join(file), dir.join(file)).unwrap();
    }
    terraform(&dir, &["init", "-input=false", "-no-color"]);
    dir
}

/// `terraform plan` of `deployment/variables.tf` alone (no provider, so offline) with `args`.
fn plan_variables(args: &[&str]) -> std::process::Output {
    let dir = provider_free(&["variables.tf"]);
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

/// `expression` evaluated by `terraform console` over `variables.tf` and `derived.tf` with the
/// variables `vars` (`name=value`; plain HTTP is allowed, which the certificate check wants).
fn derived(vars: &[&str], expression: &str) -> Value {
    let dir = provider_free(&["variables.tf", "derived.tf"]);
    let mut command = Command::new("terraform");
    command
        .current_dir(&dir)
        .args(["console", "-no-color", "-var", "plain_http=true"])
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in vars {
        command.args(["-var", var]);
    }
    let mut child = command.spawn().expect("terraform console");
    // One JSON string out, whatever the expression's type.
    writeln!(child.stdin.take().unwrap(), "jsonencode({expression})").unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "terraform console {vars:?} {expression}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The console prints the string as an HCL literal, whose escapes JSON reads alike.
    let literal: String = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not a string literal ({e}): {stdout}"));
    serde_json::from_str(&literal).unwrap()
}

/// Every `deployment/*.tf` as python-hcl2 (checkov's parser) reads it, merged:
/// `{"resource": {type: {name: body}}, "data": {…}, "locals": {…}, "variable": {…}}`. This
/// version of the parser gives every attribute as a one-element list and every block as a
/// list of bodies; `attr` and `blocks` below read them so.
fn configuration() -> Value {
    const LOAD: &str = r#"
import glob, json, os, sys
import hcl2
merged = {"resource": {}, "data": {}, "locals": {}, "variable": {}}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.tf"))):
    with open(path) as f:
        parsed = hcl2.load(f)
    for kind in ("resource", "data"):
        for entry in parsed.get(kind, []):
            for type_, named in entry.items():
                merged[kind].setdefault(type_, {}).update(named)
    for entry in parsed.get("locals", []):
        merged["locals"].update(entry)
    for entry in parsed.get("variable", []):
        merged["variable"].update(entry)
json.dump(merged, sys.stdout)
"#;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-tools/bin/python");
    let out = Command::new(&python)
        .args(["-c", LOAD])
        .arg(deployment())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): make test makes it (checkov's venv, with python-hcl2)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "python-hcl2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// An attribute's value (the parser wraps it in a one-element list).
fn attr<'a>(body: &'a Value, name: &str) -> &'a Value {
    match &body[name] {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => panic!("attribute {name}: {other} in {body}"),
    }
}

/// The blocks of one kind in a body (none: empty).
fn blocks<'a>(body: &'a Value, name: &str) -> Vec<&'a Value> {
    body[name]
        .as_array()
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

fn resource<'a>(config: &'a Value, kind: &str, name: &str) -> &'a Value {
    let body = &config["resource"][kind][name];
    assert!(body.is_object(), "no resource {kind}.{name}");
    body
}

/// The resources of one type whose attribute `key` is `value`.
fn resources_where<'a>(config: &'a Value, kind: &str, key: &str, value: &str) -> Vec<&'a Value> {
    config["resource"][kind]
        .as_object()
        .map(|named| {
            named
                .values()
                .filter(|body| body.get(key).is_some() && attr(body, key) == value)
                .collect()
        })
        .unwrap_or_default()
}

/// Every `deployment/*.tf` as text, for references that must not exist.
fn all_text() -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(deployment()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

/// A policy document's statements whose principal is the service `service`.
fn statements_for<'a>(document: &'a Value, service: &str) -> Vec<&'a Value> {
    blocks(document, "statement")
        .into_iter()
        .filter(|statement| {
            blocks(statement, "principals").iter().any(|p| {
                attr(p, "type") == "Service"
                    && attr(p, "identifiers")
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|id| id == service))
            })
        })
        .collect()
}

fn condition_keys(statement: &Value) -> Vec<String> {
    blocks(statement, "condition")
        .iter()
        .map(|c| attr(c, "variable").as_str().unwrap().to_owned())
        .collect()
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

/// Issue 28, item 1: ECS events reach on-call through the encrypted alarm topic, ElastiCache's
/// through an unencrypted one, and a failed delivery is itself an alarm.
#[test]
fn alerts_take_paths_aws_documents_as_deliverable() {
    let config = configuration();
    let key = &config["data"]["aws_iam_policy_document"]["kms"];
    // EventBridge's requests to the key carry neither aws:SourceAccount nor aws:SourceArn.
    let events = statements_for(key, "events.amazonaws.com");
    assert_eq!(
        events.len(),
        1,
        "one statement lets EventBridge use the key"
    );
    let keys = condition_keys(events[0]);
    for unsupported in ["aws:SourceAccount", "aws:SourceArn", "aws:SourceOrgID"] {
        assert!(
            !keys.iter().any(|k| k.eq_ignore_ascii_case(unsupported)),
            "EventBridge's key statement is conditioned on {unsupported}, which its requests lack"
        );
    }
    // Still scoped: to the alarm topic's encryption context.
    let context = blocks(events[0], "condition")
        .into_iter()
        .find(|c| attr(c, "variable") == "kms:EncryptionContext:aws:sns:topicArn")
        .expect("EventBridge limited to the alarm topic's encryption context");
    assert_eq!(attr(context, "values")[0], "${local.alarm_topic_arn}");
    let locals = &config["locals"];
    assert!(
        attr(locals, "alarm_topic_arn")
            .as_str()
            .unwrap()
            .ends_with(":${local.alarm_topic_name}"),
        "the key's topic ARN names the alarm topic"
    );
    let alarms = resource(&config, "aws_sns_topic", "alarms");
    assert_eq!(attr(alarms, "name"), "${local.alarm_topic_name}");
    assert_eq!(attr(alarms, "kms_master_key_id"), "${aws_kms_key.main.id}");
    // Where the condition is carried, it stays.
    for service in ["cloudwatch.amazonaws.com", "sns.amazonaws.com"] {
        let statements = statements_for(key, service);
        assert!(!statements.is_empty(), "{service} may use the key");
        for statement in statements {
            assert!(
                condition_keys(statement).contains(&"aws:SourceAccount".to_owned()),
                "{service}: no aws:SourceAccount"
            );
        }
    }
    // The rule's target is the alarm topic, and the topic's policy admits the rule.
    let target = resource(&config, "aws_cloudwatch_event_target", "deployments");
    assert_eq!(attr(target, "arn"), "${aws_sns_topic.alarms.arn}");

    // ElastiCache publishes only to an unencrypted topic, whose policy uses AWS:SourceOwner.
    let group = resource(&config, "aws_elasticache_replication_group", "main");
    let topic_ref = attr(group, "notification_topic_arn").as_str().unwrap();
    let topic_name = topic_ref
        .strip_prefix("${aws_sns_topic.")
        .and_then(|r| r.strip_suffix(".arn}"))
        .unwrap_or_else(|| panic!("notification_topic_arn: {topic_ref}"));
    let topic = resource(&config, "aws_sns_topic", topic_name);
    assert!(
        topic.get("kms_master_key_id").is_none(),
        "ElastiCache's notification topic is encrypted: its events would never arrive"
    );
    let policy = resources_where(
        &config,
        "aws_sns_topic_policy",
        "arn",
        &format!("${{aws_sns_topic.{topic_name}.arn}}"),
    );
    assert_eq!(policy.len(), 1, "the notification topic has a policy");
    let document_ref = attr(policy[0], "policy").as_str().unwrap();
    let document_name = document_ref
        .strip_prefix("${data.aws_iam_policy_document.")
        .and_then(|r| r.strip_suffix(".json}"))
        .unwrap();
    let document = &config["data"]["aws_iam_policy_document"][document_name];
    let keys: Vec<String> = blocks(document, "statement")
        .into_iter()
        .flat_map(condition_keys)
        .collect();
    assert!(keys.iter().any(|k| k == "AWS:SourceOwner"), "{keys:?}");
    assert!(!keys.iter().any(|k| k == "aws:SourceAccount"), "{keys:?}");
    let subscribed = resources_where(
        &config,
        "aws_sns_topic_subscription",
        "topic_arn",
        topic_ref,
    );
    assert!(
        subscribed.iter().any(|s| attr(s, "protocol") == "email"),
        "nobody reads the notification topic"
    );

    // An event that EventBridge cannot deliver raises an alarm, which reaches the alarm topic
    // by CloudWatch's own path.
    let failed = resources_where(
        &config,
        "aws_cloudwatch_metric_alarm",
        "metric_name",
        "FailedInvocations",
    );
    assert_eq!(failed.len(), 1, "no alarm on the rule's FailedInvocations");
    let failed = failed[0];
    assert_eq!(attr(failed, "namespace"), "AWS/Events");
    assert_eq!(
        attr(failed, "dimensions")["RuleName"],
        "${aws_cloudwatch_event_rule.deployments.name}"
    );
    assert_eq!(attr(failed, "threshold"), 0);
    assert_eq!(attr(failed, "alarm_actions"), "${local.alarm_actions}");
}

/// Issue 28, item 4: the task may open a descriptor per connection it accepts, and more.
#[test]
fn open_files_are_sized_from_max_connections() {
    for (connections, headroom_at_least) in [(10_000u64, 1_000u64), (250_000, 1_000)] {
        let [nofile, max]: [u64; 2] = serde_json::from_value(derived(
            &[&format!("http_max_connections={connections}")],
            "[local.nofile, var.http_max_connections]",
        ))
        .unwrap();
        assert_eq!(max, connections);
        assert!(nofile >= connections + headroom_at_least, "{nofile}");
    }
    let refused = plan_variables(&["-var", "plain_http=true", "-var", "http_max_connections=0"]);
    assert!(!refused.status.success(), "0 connections accepted");

    let config = configuration();
    let task = resource(&config, "aws_ecs_task_definition", "main");
    let containers = attr(task, "container_definitions").as_str().unwrap();
    // python-hcl2 renders the jsonencode argument with Python's quoting.
    for wanted in [
        "'ulimits': [{'name': 'nofile', 'softLimit': '${local.nofile}', 'hardLimit': '${local.nofile}'}]",
        "{'name': 'HTTP_MAX_CONNECTIONS', 'value': '${tostring(var.http_max_connections)}'}",
    ] {
        assert!(containers.contains(wanted), "{wanted} not in {containers}");
    }

    // The example task definition follows the same rule.
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("task_revision_example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let container = &example["containerDefinitions"][0];
    let connections: u64 = container["environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HTTP_MAX_CONNECTIONS")
        .expect("HTTP_MAX_CONNECTIONS in the example")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let nofile = container["ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "nofile")
        .expect("a nofile ulimit in the example");
    assert_eq!(nofile["softLimit"], nofile["hardLimit"]);
    let headroom = attr(&config["locals"], "nofile_headroom").as_u64().unwrap();
    assert_eq!(nofile["softLimit"].as_u64(), Some(connections + headroom));
}

/// Issue 28, item 5: the load balancer closes an idle connection before the service does.
#[test]
fn the_service_keeps_connections_longer_than_the_load_balancer() {
    for bad in [
        "idle_timeouts={load_balancer=120,service=75}",
        "idle_timeouts={load_balancer=75,service=75}",
    ] {
        let out = plan_variables(&["-var", "plain_http=true", "-var", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        let why = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
        assert!(why.contains("must be longer"), "{why}");
    }
    let fine = plan_variables(&[
        "-var",
        "plain_http=true",
        "-var",
        "idle_timeouts={load_balancer=300,service=310}",
    ]);
    assert!(
        fine.status.success(),
        "{}",
        String::from_utf8_lossy(&fine.stderr)
    );
    let [lb, service_ms]: [u64; 2] = serde_json::from_value(derived(
        &["idle_timeouts={load_balancer=300,service=310}"],
        "[var.idle_timeouts.load_balancer, local.service_idle_timeout_ms]",
    ))
    .unwrap();
    assert_eq!((lb, service_ms), (300, 310_000));
    // The defaults keep the rule too.
    let [lb, service_ms]: [u64; 2] = serde_json::from_value(derived(
        &[],
        "[var.idle_timeouts.load_balancer, local.service_idle_timeout_ms]",
    ))
    .unwrap();
    assert!(service_ms > lb * 1000, "{lb} s, {service_ms} ms");

    let config = configuration();
    let lb = resource(&config, "aws_lb", "main");
    assert_eq!(
        attr(lb, "idle_timeout"),
        "${var.idle_timeouts.load_balancer}"
    );
    let task = resource(&config, "aws_ecs_task_definition", "main");
    let containers = attr(task, "container_definitions").as_str().unwrap();
    let wanted =
        "{'name': 'HTTP_IDLE_TIMEOUT_MS', 'value': '${tostring(local.service_idle_timeout_ms)}'}";
    assert!(containers.contains(wanted), "{containers}");
}

/// Issue 28, item 7: a plan in a region opened since August 2022 does not read the Elastic
/// Load Balancing account, which does not exist there; log delivery is granted everywhere.
#[test]
fn access_logs_plan_in_regions_without_an_elb_account() {
    for (region, account) in [
        ("us-east-1", true),
        ("eu-west-1", true),
        ("ap-northeast-3", true),
        ("il-central-1", false),
        ("ap-southeast-4", false),
        ("ca-west-1", false),
        ("mx-central-1", false),
        ("me-central-1", false),
    ] {
        let reads = derived(&[&format!("region={region}")], "local.elb_log_account");
        assert_eq!(reads, account, "{region}");
    }
    let config = configuration();
    let account = &config["data"]["aws_elb_service_account"]["main"];
    assert_eq!(attr(account, "count"), "${local.elb_log_account ? 1 : 0}");
    assert_read_only_as_a_list("data.aws_elb_service_account.main");

    let policy = &config["data"]["aws_iam_policy_document"]["access_logs"];
    let delivery = statements_for(policy, "logdelivery.elasticloadbalancing.amazonaws.com");
    assert_eq!(delivery.len(), 1, "log delivery's principal not granted");
    assert_eq!(attr(delivery[0], "actions")[0], "s3:PutObject");
    assert!(
        delivery[0].get("condition").is_none(),
        "log delivery granted only under a condition"
    );
}

/// Issue 28, item 8: AWS publishing a new AMI changes nothing at the next apply; the
/// architecture, a pinned AMI or an explicit replacement does.
#[test]
fn instances_change_ami_only_on_purpose() {
    assert_eq!(derived(&[], "local.ecs_ami_from_ssm"), true);
    assert_eq!(
        derived(
            &["ecs_ami_id=ami-0123456789abcdef0"],
            "local.ecs_ami_from_ssm"
        ),
        false
    );
    let refused = plan_variables(&["-var", "plain_http=true", "-var", "ecs_ami_id=latest"]);
    assert!(!refused.status.success(), "ecs_ami_id=latest accepted");

    let config = configuration();
    let template = resource(&config, "aws_launch_template", "ecs");
    let lifecycle = blocks(template, "lifecycle");
    assert_eq!(lifecycle.len(), 1);
    assert!(
        attr(lifecycle[0], "ignore_changes")
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "${image_id}"),
        "the launch template follows every new AMI"
    );
    assert_eq!(attr(lifecycle[0], "create_before_destroy"), true);
    let triggers = attr(lifecycle[0], "replace_triggered_by");
    assert_eq!(triggers[0], "${terraform_data.ecs_ami}");
    let choice = resource(&config, "terraform_data", "ecs_ami");
    let inputs = attr(choice, "triggers_replace");
    for wanted in ["${var.architecture}", "${var.ecs_ami_id}"] {
        assert!(
            inputs.as_array().unwrap().iter().any(|i| i == wanted),
            "{wanted} does not replace the launch template"
        );
    }
    let ssm = &config["data"]["aws_ssm_parameter"]["ecs_ami"];
    assert_eq!(attr(ssm, "count"), "${local.ecs_ami_from_ssm ? 1 : 0}");
    assert_read_only_as_a_list("data.aws_ssm_parameter.ecs_ami");
}

/// A data source that may not exist (a count of 0) is read only as a list, `[*]`, which is
/// empty then: a bare reference would fail the plan.
fn assert_read_only_as_a_list(address: &str) {
    let text = all_text();
    let bare = text
        .match_indices(address)
        .filter(|(at, found)| !text[at + found.len()..].starts_with("[*]"))
        .count();
    assert_eq!(bare, 0, "{address} read without [*]");
}

/// Issue 28, item 9: the task role is ECS's for this account and region only.
#[test]
fn the_task_role_is_for_this_accounts_tasks() {
    let config = configuration();
    let role = resource(&config, "aws_iam_role", "task");
    let document_ref = attr(role, "assume_role_policy").as_str().unwrap();
    let name = document_ref
        .strip_prefix("${data.aws_iam_policy_document.")
        .and_then(|r| r.strip_suffix(".json}"))
        .unwrap();
    let document = &config["data"]["aws_iam_policy_document"][name];
    let statements = statements_for(document, "ecs-tasks.amazonaws.com");
    assert_eq!(statements.len(), 1);
    let conditions = blocks(statements[0], "condition");
    let find = |key: &str| {
        conditions
            .iter()
            .find(|c| attr(c, "variable") == key)
            .unwrap_or_else(|| panic!("no {key} in the task role's trust"))
    };
    assert_eq!(
        attr(find("aws:SourceAccount"), "values")[0],
        "${data.aws_caller_identity.current.account_id}"
    );
    let arn = find("aws:SourceArn");
    assert_eq!(attr(arn, "test"), "ArnLike");
    assert_eq!(
        attr(arn, "values")[0],
        "arn:aws:ecs:${var.region}:${data.aws_caller_identity.current.account_id}:*"
    );
}

/// Issue 26: Redis never drops a count to make room, in a replication group or a cluster.
#[test]
fn redis_never_evicts_counts() {
    let config = configuration();
    for (group, cluster_mode) in [("main", false), ("cluster", true)] {
        let group = resource(&config, "aws_elasticache_replication_group", group);
        let reference = attr(group, "parameter_group_name").as_str().unwrap();
        let name = reference
            .strip_prefix("${aws_elasticache_parameter_group.")
            .and_then(|r| r.strip_suffix("[0].name}"))
            .unwrap_or_else(|| panic!("parameter_group_name: {reference}"));
        let parameters = resource(&config, "aws_elasticache_parameter_group", name);
        // The family of the engine in use: redis7 for Redis 7.x, valkey8 for Valkey 8.x.
        let engine = attr(group, "engine").as_str().unwrap();
        let major = attr(group, "engine_version")
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        assert_eq!(
            attr(parameters, "family"),
            format!("{engine}{major}").as_str()
        );
        let parameter = |wanted: &str| -> Vec<String> {
            blocks(parameters, "parameter")
                .into_iter()
                .filter(|p| attr(p, "name") == wanted)
                .map(|p| attr(p, "value").as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(parameter("maxmemory-policy"), ["noeviction"]);
        match cluster_mode {
            true => assert_eq!(parameter("cluster-enabled"), ["yes"]),
            false => assert!(parameter("cluster-enabled").is_empty()),
        }
    }
}

/// Issue 26: destroying the stack, or a change that would replace the store, keeps the
/// counts, whichever store it is; a stack made before the choice keeps its group.
#[test]
fn counts_survive_destroy_and_replacement() {
    let config = configuration();
    for (kind, name) in [
        ("aws_elasticache_replication_group", "main"),
        ("aws_elasticache_replication_group", "cluster"),
        ("aws_elasticache_serverless_cache", "main"),
    ] {
        let store = resource(&config, kind, name);
        let lifecycle = blocks(store, "lifecycle");
        assert_eq!(lifecycle.len(), 1, "no lifecycle on {kind}.{name}");
        assert_eq!(attr(lifecycle[0], "prevent_destroy"), true);
        assert!(
            attr(store, "snapshot_retention_limit")
                .as_u64()
                .is_some_and(|days| days >= 1),
            "{kind}.{name}: automatic snapshots off"
        );
    }
    for name in ["main", "cluster"] {
        let group = resource(&config, "aws_elasticache_replication_group", name);
        let final_snapshot = attr(group, "final_snapshot_identifier").as_str().unwrap();
        assert!(!final_snapshot.is_empty());
        assert_eq!(
            attr(group, "snapshot_name"),
            "${var.redis_restore_snapshot}",
            "no way to start from a snapshot"
        );
    }
    let serverless = resource(&config, "aws_elasticache_serverless_cache", "main");
    assert!(attr(serverless, "snapshot_arns_to_restore")
        .as_str()
        .unwrap()
        .contains("var.redis_restore_snapshot"));
    // The group of stacks applied before `store` stays where their state has it.
    let text = all_text();
    for (from, to) in [
        (
            "aws_elasticache_replication_group.main",
            "aws_elasticache_replication_group.main[0]",
        ),
        (
            "aws_elasticache_parameter_group.main",
            "aws_elasticache_parameter_group.main[0]",
        ),
    ] {
        assert!(
            text.contains(&format!("from = {from}\n  to   = {to}")),
            "no moved block from {from}"
        );
    }
}

/// Issue 27: the store is one of three, and the tasks are told what it is: its mode, the
/// replicas a 200 waits for (one where a failover leaves one to wait for), and serverless's
/// data limit.
#[test]
fn the_store_is_a_choice_and_the_tasks_are_told_which() {
    let store = |vars: &[&str]| {
        derived(
            vars,
            "[local.redis_mode, local.redis_wait_replicas, local.redis_data_limit_bytes, local.redis_node_count]",
        )
    };
    let json = |v: serde_json::Value| v;
    assert_eq!(
        store(&[]),
        json(serde_json::json!(["standalone", 0, null, 2]))
    );
    assert_eq!(
        store(&["redis_nodes=3"]),
        json(serde_json::json!(["standalone", 1, null, 3]))
    );
    assert_eq!(
        store(&["store=cluster"]),
        json(serde_json::json!(["cluster", 0, null, 6]))
    );
    assert_eq!(
        store(&[
            "store=cluster",
            "redis_shards=4",
            "redis_replicas_per_shard=2"
        ]),
        json(serde_json::json!(["cluster", 1, null, 12]))
    );
    assert_eq!(
        store(&["store=serverless", "serverless_max_data_gb=5"]),
        json(serde_json::json!(["cluster", 0, 5_000_000_000u64, 0]))
    );
    assert_eq!(
        store(&["store=serverless", "redis_wait_replicas=0"])[1],
        serde_json::json!(0)
    );
    // What cannot work is refused at the plan: WAIT where there is none, or for more replicas
    // than there are (every greeting would be a 504), and a store that does not exist.
    for args in [
        &["-var", "store=serverless", "-var", "redis_wait_replicas=1"][..],
        &["-var", "redis_wait_replicas=2"][..],
        &["-var", "store=cluster", "-var", "redis_wait_replicas=2"][..],
        &["-var", "store=memcached"][..],
        &["-var", "store=cluster", "-var", "redis_shards=65"][..],
    ] {
        let mut all = vec!["-var", "plain_http=true"];
        all.extend_from_slice(args);
        let out = plan_variables(&all);
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    let ecs = std::fs::read_to_string(deployment().join("ecs.tf")).unwrap();
    for told in [
        r#"{ name = "REDIS_MODE", value = local.redis_mode }"#,
        r#"{ name = "REDIS_WAIT_REPLICAS", value = tostring(local.redis_wait_replicas) }"#,
        r#"{ name = "REDIS_DATA_LIMIT_BYTES", value = local.redis_data_limit_bytes == null ? "" : format("%d", local.redis_data_limit_bytes) }"#,
    ] {
        assert!(ecs.contains(told), "the task is not told {told}");
    }
}

/// Issue 27: a serverless cache cannot grow the bill without bound, is reached only from the
/// instances over TLS with a password, and its service user may run only what the service
/// sends.
#[test]
fn serverless_is_capped_encrypted_and_least_privileged() {
    let config = configuration();
    let cache = resource(&config, "aws_elasticache_serverless_cache", "main");
    assert_eq!(attr(cache, "engine"), "valkey");
    assert_eq!(attr(cache, "kms_key_id"), "${aws_kms_key.main.arn}");
    assert_eq!(
        attr(cache, "security_group_ids"),
        &serde_json::json!(["${aws_security_group.redis.id}"])
    );
    let limits = blocks(cache, "cache_usage_limits");
    assert_eq!(limits.len(), 1);
    let data = blocks(limits[0], "data_storage");
    assert_eq!(attr(data[0], "maximum"), "${var.serverless_max_data_gb}");
    assert_eq!(attr(data[0], "unit"), "GB");
    let ecpu = blocks(limits[0], "ecpu_per_second");
    assert_eq!(
        attr(ecpu[0], "maximum"),
        "${var.serverless_max_ecpu_per_second}"
    );
    assert_eq!(
        attr(cache, "user_group_id"),
        "${aws_elasticache_user_group.serverless[0].user_group_id}"
    );
    let default = resource(&config, "aws_elasticache_user", "default");
    assert!(attr(default, "access_string")
        .as_str()
        .unwrap()
        .starts_with("off"));
    let service = resource(&config, "aws_elasticache_user", "service");
    let access = attr(service, "access_string").as_str().unwrap();
    assert!(
        access.starts_with("on ") && access.contains("-@all"),
        "{access}"
    );
    for command in ["+@sortedset", "+info", "+cluster|shards", "+eval"] {
        assert!(access.contains(command), "{access} lacks {command}");
    }
    for wide in ["+@all", "+@dangerous", "+flushall", "+config"] {
        assert!(!access.contains(wide), "{access} allows {wide}");
    }
    // Data and processing near their caps warn, then page; throttling pages.
    let alarms = derived(
        &["store=serverless", "serverless_max_data_gb=5"],
        "{ for key, a in local.serverless_alarms : key => [a.metric, a.threshold, a.pages] }",
    );
    assert_eq!(
        alarms,
        serde_json::json!({
            "data-warn": ["BytesUsedForCache", 4_000_000_000u64, false],
            "data-page": ["BytesUsedForCache", 4_500_000_000u64, true],
            "throttled": ["ThrottledCmds", 0, true],
            "ecpu": ["ElastiCacheProcessingUnits", 12_000_000, false],
        })
    );
    let alarm = resource(&config, "aws_cloudwatch_metric_alarm", "serverless");
    assert_eq!(attr(alarm, "for_each"), "${local.serverless_alarms}");
    assert_eq!(attr(alarm, "dimensions"), "${local.serverless_dimensions}");
    assert_reaches_whom_its_table_says(alarm);
    // No serverless alarm on a store of nodes, and no node alarm on a serverless cache.
    assert_eq!(
        derived(&[], "local.serverless_alarms"),
        serde_json::json!({})
    );
    assert_eq!(
        derived(&["store=serverless"], "local.redis_node_alarms"),
        serde_json::json!({})
    );
}

/// An alarm made from a table pages (the alarm topic) or informs (the notice topic) as its
/// row says, and tells the same topic when it is over.
fn assert_reaches_whom_its_table_says(alarm: &Value) {
    let whom = "${each.value.pages ? local.alarm_actions : local.notice_actions}";
    assert_eq!(attr(alarm, "alarm_actions"), whom);
    assert_eq!(attr(alarm, "ok_actions"), whom);
}

/// Issue 26: memory warns at 80% and pages at 90%; refused names inform, -OOM pages.
#[test]
fn full_memory_warns_then_pages() {
    let config = configuration();
    // The worst node's memory: 80% informs, 90% pages.
    let memory = derived(
        &[],
        // One line: the console reads an expression a line.
        r#"{ for key, a in local.redis_node_alarms : key => [a.threshold, a.pages] if a.metric == "DatabaseMemoryUsagePercentage" }"#,
    );
    assert_eq!(
        memory,
        serde_json::json!({ "memory-warn": [80, false], "memory-page": [90, true] })
    );
    let alarm = resource(&config, "aws_cloudwatch_metric_alarm", "redis_node");
    assert_eq!(attr(alarm, "for_each"), "${local.redis_node_alarms}");
    assert_reaches_whom_its_table_says(alarm);
    // Every node is watched, whichever is the primary now.
    let queries = blocks(alarm, "dynamic");
    assert_eq!(
        attr(&queries[0]["metric_query"], "for_each"),
        "${range(local.redis_node_count)}"
    );
    // Replication lag only where there are replicas; a cluster's nodes are every shard's.
    let keys = |vars: &[&str]| derived(vars, "keys(local.redis_node_alarms)");
    assert_eq!(
        keys(&["redis_nodes=1"]),
        serde_json::json!(["cpu", "evictions", "memory-page", "memory-warn"])
    );
    assert_eq!(
        keys(&["store=cluster"]),
        serde_json::json!([
            "cpu",
            "evictions",
            "memory-page",
            "memory-warn",
            "replication-lag"
        ])
    );
    assert_eq!(
        derived(
            &["store=cluster", "redis_shards=3"],
            "local.redis_node_count"
        ),
        6
    );

    for (metric, actions) in [
        ("NamesRefused", "${local.notice_actions}"),
        ("StoreFull", "${local.alarm_actions}"),
    ] {
        let alarms = resources_where(
            &config,
            "aws_cloudwatch_metric_alarm",
            "metric_name",
            metric,
        );
        assert_eq!(alarms.len(), 1, "no alarm on the service's {metric}");
        assert_eq!(attr(alarms[0], "namespace"), "${local.emf_namespace}");
        assert_eq!(attr(alarms[0], "threshold"), 0);
        assert_eq!(attr(alarms[0], "alarm_actions"), actions, "{metric}");
    }
}

/// The variables declared by the `.tf` files of `dir` (not its subfolders).
fn declared_variables(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "tf") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if let Some(rest) = line.strip_prefix("variable \"") {
                    names.insert(rest.split('"').next().unwrap().to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn the_state_bucket_and_the_stack_read_one_region_from_one_file() {
    let example = std::fs::read_to_string(deployment().join("stack.tfvars.example")).unwrap();
    let keys: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().trim())
        .collect();
    assert!(
        keys.contains(&"region") && keys.contains(&"name"),
        "{keys:?}"
    );
    let stack = declared_variables(&deployment());
    let bootstrap = declared_variables(&deployment().join("bootstrap"));
    for key in &keys {
        assert!(stack.contains(*key), "deployment/ does not declare {key}");
        assert!(
            bootstrap.contains(*key),
            "deployment/bootstrap does not declare {key}"
        );
    }
    // And the README gives it to both applies, from the repository's root.
    let readme = std::fs::read_to_string(deployment().join("../README.md")).unwrap();
    assert!(
        readme.contains("terraform -chdir=deployment/bootstrap apply -var-file=../stack.tfvars")
    );
    assert!(readme.contains("terraform -chdir=deployment apply -var-file=stack.tfvars"));
    assert!(
        !readme.contains("\ncd deployment"),
        "a block that depends on the one before"
    );
}
