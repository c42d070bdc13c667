//! AWS peers for the cluster tests: the moto emulator (signature checking on), a cluster of
//! nodes discovering each other through it, and stubs of the EC2 instance metadata service and
//! the ECS credentials endpoint, which have no emulator. The metadata stub follows the
//! documented IMDSv2 protocol: `PUT /latest/api/token` with a TTL header gives a token; every
//! `GET` needs it (401 without), unless the stub plays an IMDSv1-only service that refuses the
//! `PUT`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, Service};

pub fn venv_bin(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A moto server of our own, with an IAM user whose key every later call is signed with.
pub struct Moto {
    child: Child,
    pub url: String,
    pub key: String,
    pub secret: String,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// With extra environment for the server (e.g. `MOTO_ECS_SERVICE_RUNNING`).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Moto::spawn(addr, &format!("http://{addr}"), env)
    }

    /// Listening on `addr`, and known to clients by `url` (e.g. one that names port 80).
    pub fn start_at(addr: SocketAddr, url: &str) -> Moto {
        Moto::spawn(addr, url, &[])
    }

    fn spawn(addr: SocketAddr, url: &str, env: &[(&str, &str)]) -> Moto {
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run .venv/bin/moto_server: the README's test command installs it");
        let url = url.to_owned();
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let mut moto = Moto {
            child,
            url,
            key: String::new(),
            secret: String::new(),
        };
        let creds = moto.script(&["credentials"]);
        moto.key = creds["key"].as_str().unwrap().to_owned();
        moto.secret = creds["secret"].as_str().unwrap().to_owned();
        moto
    }

    /// Runs tests/aws/moto.py with this server and key; returns its JSON answer.
    pub fn script(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(venv_bin("python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/moto.py"))
            .args(args)
            .env("MOTO_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", &self.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .output()
            .expect("run moto.py");
        assert!(
            out.status.success(),
            "moto.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("moto.py JSON")
    }

    /// Stops the server without closing its sockets (SIGSTOP): AWS hangs. `resume` undoes it.
    pub fn pause(&self) {
        super::send_signal(self.child.id(), super::Signal::STOP);
    }

    pub fn resume(&self) {
        super::send_signal(self.child.id(), super::Signal::CONT);
    }

    /// Ends the server, as an AWS outage would look to a node.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The environment a node needs to discover its cluster through this server.
    pub fn node_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.url.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("DEBUG".into(), "false".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the metadata stub serves.
#[derive(Clone)]
pub struct ImdsConfig {
    pub instance_id: String,
    pub region: String,
    /// Role credentials (`AccessKeyId`, `SecretAccessKey`, `Token`), if the instance has a
    /// role.
    pub credentials: Option<(String, String, String)>,
    /// Refuse the token call with 403, as an IMDSv1-only service would.
    pub v1_only: bool,
}

/// A metadata stub on 127.0.0.1, answering one connection at a time.
pub struct ImdsStub {
    pub url: String,
    /// GETs that came without a token (IMDSv1 style).
    pub tokenless_gets: Arc<AtomicUsize>,
    pub token_puts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

const TOKEN: &str = "stub-token-AQAEAK";

impl ImdsStub {
    pub fn start(config: ImdsConfig) -> ImdsStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tokenless_gets = Arc::new(AtomicUsize::new(0));
        let token_puts = Arc::new(AtomicUsize::new(0));
        let (s, t, p) = (
            Arc::clone(&stop),
            Arc::clone(&tokenless_gets),
            Arc::clone(&token_puts),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let _ = serve_imds(stream, &config, &t, &p);
                }
            }
        });
        ImdsStub {
            url: format!("http://{addr}"),
            tokenless_gets,
            token_puts,
            stop,
            addr,
        }
    }
}

impl Drop for ImdsStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_imds(
    stream: TcpStream,
    config: &ImdsConfig,
    tokenless: &AtomicUsize,
    puts: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
    }
    let (status, body) = if method == "PUT" && path == "/latest/api/token" {
        puts.fetch_add(1, Ordering::SeqCst);
        if config.v1_only {
            (403, String::new())
        } else if header("x-aws-ec2-metadata-token-ttl-seconds").is_none() {
            (400, String::new())
        } else {
            (200, TOKEN.to_owned())
        }
    } else if method == "GET" {
        let token = header("x-aws-ec2-metadata-token");
        if token.is_none() {
            tokenless.fetch_add(1, Ordering::SeqCst);
        }
        if !config.v1_only && token != Some(TOKEN) {
            (401, String::new())
        } else {
            imds_get(path, config)
        }
    } else {
        (405, String::new())
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn imds_get(path: &str, config: &ImdsConfig) -> (u16, String) {
    match path {
        "/latest/meta-data/instance-id" => (200, config.instance_id.clone()),
        "/latest/dynamic/instance-identity/document" => (
            200,
            serde_json::json!({"instanceId": config.instance_id, "region": config.region})
                .to_string(),
        ),
        "/latest/meta-data/iam/security-credentials/" if config.credentials.is_some() => {
            (200, "hello-role".into())
        }
        "/latest/meta-data/iam/security-credentials/hello-role" => match &config.credentials {
            Some((key, secret, token)) => (
                200,
                serde_json::json!({
                    "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key,
                    "SecretAccessKey": secret, "Token": token,
                    "Expiration": "2099-01-01T00:00:00Z"
                })
                .to_string(),
            ),
            None => (404, String::new()),
        },
        _ => (404, String::new()),
    }
}

/// A peer that accepts connections and never answers.
pub fn hanging_listener(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr).expect("bind the hanging peer")
}

/// A node whose AWS accepts connections and never answers (for as long as the listener
/// returned with it lives).
pub fn node_with_hung_aws(extra: &[(&str, &str)]) -> (Service, TcpListener) {
    let hung = hanging_listener("127.0.0.1:0".parse().expect("an address"));
    let url = format!("http://{}", hung.local_addr().expect("its address"));
    (node_with_aws(&url, extra), hung)
}

/// What the ECS credentials endpoint stub hands out.
pub struct ContainerCredentials {
    /// `AccessKeyId`, `SecretAccessKey`, `Token`.
    pub credentials: (String, String, String),
    /// The `Authorization` header a caller must send.
    pub authorization: &'static str,
    /// `Expiration`, RFC 3339.
    pub expiration: String,
    /// How many calls get credentials; every later one is answered 500, as an agent in trouble
    /// would.
    pub answers: usize,
}

/// A stub of the ECS container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`):
/// answers `GET /creds` with the credentials JSON when the `Authorization` header matches,
/// 401 otherwise. Returns its URL, a counter of refused calls and one of all calls.
pub fn container_endpoint(
    serves: ContainerCredentials,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/creds", listener.local_addr().unwrap());
    let refused = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (refused_counter, calls_counter) = (Arc::clone(&refused), Arc::clone(&calls));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let call = calls_counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((n, v)) = line.split_once(':') {
                    if n.eq_ignore_ascii_case("authorization") && v.trim() == serves.authorization {
                        authorized = true;
                    }
                }
            }
            let (status, body) = if !authorized {
                refused_counter.fetch_add(1, Ordering::SeqCst);
                (401, String::new())
            } else if call < serves.answers {
                let (key, secret, token) = &serves.credentials;
                (200, serde_json::json!({
                    "AccessKeyId": key, "SecretAccessKey": secret, "Token": token,
                    "Expiration": serves.expiration, "RoleArn": "arn:aws:iam::123456789012:role/hello"
                }).to_string())
            } else {
                (500, "the agent is restarting".to_owned())
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, refused, calls)
}

/// A cluster in moto: one instance per address (127.0.0.x), registered with a Classic ELB and
/// an instance target group, and the nodes that serve on those addresses.
pub struct MotoCluster {
    pub moto: Moto,
    pub port: u16,
    pub instances: serde_json::Map<String, serde_json::Value>,
    pub elb: String,
    pub target_group: String,
}

impl MotoCluster {
    pub fn new(ips: &[&str]) -> MotoCluster {
        MotoCluster::in_moto(Moto::start(), ips)
    }

    /// The cluster made in a moto already running.
    pub fn in_moto(moto: Moto, ips: &[&str]) -> MotoCluster {
        let port = free_port();
        let mut args = vec!["cluster".to_string(), port.to_string()];
        args.extend(ips.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let made = moto.script(&args);
        MotoCluster {
            port,
            instances: made["instances"].as_object().unwrap().clone(),
            elb: made["elb"].as_str().unwrap().to_owned(),
            target_group: made["target_group"].as_str().unwrap().to_owned(),
            moto,
        }
    }

    pub fn id(&self, ip: &str) -> String {
        self.instances[ip].as_str().unwrap().to_owned()
    }

    pub fn addr(&self, ip: &str) -> SocketAddr {
        format!("{ip}:{}", self.port).parse().unwrap()
    }

    /// Starts a node on `ip` discovering through `discovery` (`ELB_NAME` or
    /// `TARGET_GROUP_ARN`); returns it, once it knows its instance id (so that its `/health`
    /// says who it is), with its metadata stub.
    /// A node on each of `ips`, all behind the Classic ELB, with default settings.
    pub fn elb_nodes(&self, ips: &[&str]) -> Vec<(Service, ImdsStub)> {
        ips.iter()
            .map(|ip| self.node(ip, ("ELB_NAME", &self.elb), &[]))
            .collect()
    }

    pub fn node(
        &self,
        ip: &str,
        discovery: (&str, &str),
        extra: &[(&str, &str)],
    ) -> (Service, ImdsStub) {
        let instance_id = self
            .instances
            .get(ip)
            .and_then(|v| v.as_str())
            .unwrap_or("i-none")
            .to_owned();
        let imds = ImdsStub::start(ImdsConfig {
            instance_id: instance_id.clone(),
            region: "us-east-1".into(),
            credentials: None,
            v1_only: false,
        });
        let mut env: Vec<(String, String)> = self.moto.node_env();
        env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.url.clone()));
        env.push((discovery.0.into(), discovery.1.into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let node = Service::start_at(self.addr(ip), &env);
        wait_for_instance_id(&node, &instance_id);
        (node, imds)
    }
}

/// The instance ids listed under `key` (`node_healths` or `unreachable`).
pub fn ids(value: &serde_json::Value, key: &str) -> std::collections::BTreeSet<String> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {value}"))
        .iter()
        .map(|n| n["ec2_instance_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits for a node's instance id (learnt from metadata in the background).
pub fn wait_for_instance_id(node: &Service, id: &str) {
    let start = Instant::now();
    while node.get("/health").json()["ec2_instance_id"] != id {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "instance id never learnt"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a node has found its cluster's membership (it logs it), without asking
/// `/health/cluster`.
pub fn wait_for_membership(node: &Service) {
    let start = Instant::now();
    while !node.logs().contains("cluster membership: ") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no membership found: {}",
            node.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Answers every request with `status` and `body`, as an AWS endpoint in trouble would; counts
/// the requests it answered.
pub fn canned_server(
    addr: SocketAddr,
    status: &str,
    body: &str,
) -> (TcpListener, Arc<AtomicUsize>) {
    let (status, body) = (status.to_owned(), body.to_owned());
    scripted_server(addr, move |_| (status.clone(), body.clone()))
}

/// Answers the `n`th request (from 0) with `answer(n)`: a status (code and reason) and a body.
/// Counts the requests it answered.
pub fn scripted_server(
    addr: SocketAddr,
    answer: impl Fn(usize) -> (String, String) + Send + 'static,
) -> (TcpListener, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).unwrap();
    let accepting = listener.try_clone().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    thread::spawn(move || {
        for (n, mut stream) in accepting.incoming().flatten().enumerate() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let (status, body) = answer(n);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (listener, answered)
}

/// A node (on 127.0.0.1) that discovers its cluster through the AWS endpoint `aws_url` with
/// static credentials and no instance metadata. `extra` adds to or overrides its environment.
pub fn node_with_aws(aws_url: &str, extra: &[(&str, &str)]) -> Service {
    let mut env = vec![
        ("DEBUG", "false"),
        ("ELB_NAME", "hello-elb"),
        ("AWS_ENDPOINT_URL", aws_url),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend_from_slice(extra);
    Service::start(&env)
}

/// The ELB error document AWS answers when it throttles a caller.
pub const THROTTLING: &str =
    "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\">\
     <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
     <RequestId>1</RequestId></ErrorResponse>";
