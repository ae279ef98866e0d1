//! A small W3C WebDriver client for the browser tests: Debian's
//! `chromedriver` driving headless `chromium`, spoken to over plain HTTP with
//! the blocking reqwest client the other tests use. Only what the tests need:
//! navigate, find, click, type, read, run a script, screenshot.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for the page lasts before the test fails: generous, since
/// it only bounds a failure, never measures anything.
pub const WAIT: Duration = Duration::from_secs(60);

/// The chromedriver and chromium binaries, or why the browser tests cannot
/// run here.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            let p = Path::new(n);
            if p.is_absolute() {
                p.is_file().then(|| p.to_path_buf())
            } else {
                std::env::var_os("PATH").and_then(|paths| {
                    std::env::split_paths(&paths)
                        .map(|d| d.join(n))
                        .find(|c| c.is_file())
                })
            }
        })
    };
    let driver = find(&["chromedriver", "/usr/lib/chromium/chromedriver"])
        .ok_or("no chromedriver (Debian: apt-get install chromium-driver)")?;
    let chromium = find(&["chromium", "/usr/lib/chromium/chromium", "chromium-browser"])
        .ok_or("no chromium (Debian: apt-get install chromium)")?;
    Ok((driver, chromium))
}

/// Whether a test without a browser fails (CI) rather than skips.
pub fn browser_required() -> bool {
    std::env::var("RAGCHAT_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// A headless browser with a window of `width`×`height`.
    pub fn start(width: u32, height: u32) -> Self {
        let (driver_bin, chromium) = find_browser().unwrap_or_else(|e| panic!("{e}"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for chromedriver");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
            http,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}"),
                         "--force-device-scale-factor=1", "--lang=en-US"],
            },
        }}});
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn try_session_call(&self, path: &str, body: Value) -> Option<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let resp = self.http.post(url).json(&body).send().ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().ok().map(|v| v["value"].clone())
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Every element matching a CSS selector, now.
    pub fn all(&self, css: &str) -> Vec<Element> {
        self.try_session_call("/elements", json!({"using": "css selector", "value": css}))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
            .collect()
    }

    /// The first element matching `css` that is displayed, waiting for it.
    pub fn find(&self, css: &str) -> Element {
        self.wait_for(&format!("a visible {css}"), || {
            self.all(css).into_iter().find(|e| self.displayed(e))
        })
    }

    pub fn testid(&self, id: &str) -> Element {
        self.find(&format!("[data-testid=\"{id}\"]"))
    }

    pub fn displayed(&self, e: &Element) -> bool {
        self.try_get(&format!("/element/{}/displayed", e.0))
            .is_some_and(|v| v == true)
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let resp = self.http.get(url).send().ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().ok().map(|v| v["value"].clone())
    }

    pub fn click(&self, e: &Element) {
        // An element can be covered for a moment (a banner fading, a list
        // re-rendering); retry until the wait runs out.
        self.wait_for("a click to land", || {
            self.try_session_call(&format!("/element/{}/click", e.0), json!({}))
        });
    }

    pub fn clear(&self, e: &Element) {
        self.session_call("POST", &format!("/element/{}/clear", e.0), None);
    }

    pub fn type_text(&self, e: &Element, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        );
    }

    /// Give a file input a file from disk.
    pub fn choose_file(&self, e: &Element, path: &Path) {
        self.type_text(e, &path.to_string_lossy());
    }

    pub fn text(&self, e: &Element) -> String {
        self.try_get(&format!("/element/{}/text", e.0))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.try_get(&format!("/element/{}/attribute/{name}", e.0))
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Run `script` (a function body; `arguments` holds `args`) in the page.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    pub fn element_arg(e: &Element) -> Value {
        json!({ ELEMENT: e.0 })
    }

    /// Poll `f` until it gives a value; fail the test with `what` after
    /// [`WAIT`].
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let body = self
                    .try_session_call(
                        "/execute/sync",
                        json!({"script": "return document.body ? document.body.innerText : ''", "args": []}),
                    )
                    .unwrap_or(Value::Null);
                panic!(
                    "timed out waiting for {what}; page text: {}; console: {:?}",
                    body.as_str()
                        .unwrap_or("")
                        .chars()
                        .take(2000)
                        .collect::<String>(),
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The browser console since the last call (errors, CSP violations).
    pub fn console(&self) -> Vec<String> {
        self.try_session_call("/se/log", json!({"type": "browser"}))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    pub fn screenshot_png(&self) -> Vec<u8> {
        let v = self.session_call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("screenshot is base64")
    }

    /// Save a screenshot as `NAME.png` in `$RAGCHAT_SCREENSHOTS`, when set:
    /// that is how the images in docs/ are made.
    pub fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("RAGCHAT_SCREENSHOTS") {
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            let path = Path::new(&dir).join(format!("{name}.png"));
            std::fs::write(&path, self.screenshot_png()).expect("write screenshot");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
