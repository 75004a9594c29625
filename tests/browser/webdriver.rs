//! Just enough of the W3C WebDriver protocol to drive Chromium through ChromeDriver: one
//! session, navigation, elements by CSS selector, scripts and screenshots. ChromeDriver runs
//! in a process group of its own, which is killed (Chromium with it) when the test ends.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::support::{PATIENCE, TestClient};

/// The W3C name of an element reference in a response.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub enum By<'s> {
    Css(&'s str),
}

pub struct Browser {
    driver: Child,
    client: TestClient,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a headless Chromium session
    /// (the flags keep Chromium off the network: this machine reaches nothing but itself).
    pub async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{driver_bin}: {e} (Debian: apt-get install chromium chromium-driver)"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = TestClient::new(addr);
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser { driver, client, base: format!("http://{addr}"), _profile: profile };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = browser.client.try_request(Method::GET, "/status", &[], Bytes::new()).await;
            if ready.is_some_and(|a| a.json()["value"]["ready"] == true) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = browser._profile.path().display().to_string();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900", format!("--user-data-dir={profile}"),
                ],
            },
        }}});
        let session = browser.call(Method::POST, "/session", Some(capabilities)).await;
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One command; the response's `value` (a WebDriver error fails the test).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    async fn try_call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let body = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        let answer = self.client.send_to(&url, method, &[("content-type", "application/json")], body).await;
        let mut value = answer.json();
        if answer.status.is_success() { Ok(value["value"].take()) } else { Err(value["value"].take()) }
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn element(&self, by: By<'_>) -> Option<String> {
        let By::Css(selector) = by;
        let found =
            self.try_call(Method::POST, "/element", Some(json!({ "using": "css selector", "value": selector })));
        found.await.ok().and_then(|value| value[ELEMENT].as_str().map(str::to_owned))
    }

    /// The element's rendered text, if it exists.
    pub async fn text(&self, by: By<'_>) -> Option<String> {
        let element = self.element(by).await?;
        self.try_call(Method::GET, &format!("/element/{element}/text"), None).await.ok()?.as_str().map(str::to_owned)
    }

    pub async fn displayed(&self, by: By<'_>) -> bool {
        let Some(element) = self.element(by).await else { return false };
        self.call(Method::GET, &format!("/element/{element}/displayed"), None).await == json!(true)
    }

    pub async fn type_into(&self, by: By<'_>, text: &str) {
        let element = self.element(by).await.expect("the input exists");
        self.call(Method::POST, &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn click(&self, by: By<'_>) {
        let element = self.element(by).await.expect("the element exists");
        self.call(Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// The viewport as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap()
    }

    pub async fn quit(&self) {
        let _ = self.try_call(Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and the Chromium it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
