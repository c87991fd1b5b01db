//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`),
//! with a client of a dozen calls over reqwest rather than another dependency tree.
//!
//! Each [`Browser`] starts its own chromedriver on a free port, in a process group of
//! its own, so that dropping it (even when a test panics) kills the driver and every
//! Chromium process it started.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long `wait_for` polls before failing the test.
pub const WAIT: Duration = Duration::from_secs(20);
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    client: reqwest::Client,
    session: String,
    driver: Child,
}

/// The binary at `$variable`, else at `default`; a missing one fails the test with
/// what to install, so a machine without Chromium can never pass these tests silently.
fn binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "the dashboard tests need headless Chromium and ChromeDriver, and {} does not exist. \
         Install them with `apt-get install -y chromium chromium-driver` (.ci/run does), \
         or point {variable} at the binary.",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1280×900 window, in
    /// UTC whatever the machine's time zone, so that what the pages show does not depend
    /// on where the tests run.
    pub async fn start() -> Browser {
        Self::start_in_time_zone("UTC").await
    }

    /// The same, with the browser's clock in `time_zone` (an IANA name such as
    /// `Asia/Kolkata`): Chromium takes its zone from `TZ`.
    pub async fn start_in_time_zone(time_zone: &str) -> Browser {
        let chromium = binary("CHROMIUM_BIN", DEFAULT_CHROMIUM);
        let chromedriver = binary("CHROMEDRIVER_BIN", DEFAULT_CHROMEDRIVER);
        let (driver, port) = spawn_driver(&chromedriver, time_zone).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--window-size=1280,900",
                    "--lang=en-US",
                ],
            },
        }}});
        let mut browser = Browser {
            client,
            session: String::new(),
            driver,
        };
        let created = browser
            .command(
                reqwest::Method::POST,
                &format!("http://127.0.0.1:{port}/session"),
                Some(capabilities),
            )
            .await;
        let id = created["sessionId"]
            .as_str()
            .expect("WebDriver session id")
            .to_owned();
        browser.session = format!("http://127.0.0.1:{port}/session/{id}");
        browser
    }

    async fn command(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.expect("WebDriver answers JSON");
        assert!(
            status.is_success(),
            "WebDriver {method} {url} answered {status}: {}",
            body["value"]["message"].as_str().unwrap_or("(no message)")
        );
        body["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            &format!("{}{path}", self.session),
            Some(body),
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body: `return ...`) in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls `script` until it returns something truthy and returns that, failing the
    /// test after [`WAIT`] with `what` and the script's last value.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let value = self.eval(script).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(_) | Value::Object(_) => true,
            };
            if truthy {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?} for {what}; the page shows {}",
                self.eval("return (document.getElementById('main') ?? document.body).innerText")
                    .await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css:?}: {found}"))
            .to_owned()
    }

    /// Clicks the element as a user would (WebDriver moves the pointer there).
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    /// Replaces the text of an input or text area by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Saves a PNG of the whole page (the window is stretched to the page's height for
    /// the shot) as `<dir>/<name>.png`, where dir is `UI_SCREENSHOT_DIR` or
    /// `target/ui-screenshots`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.stretched_screenshot(name, true).await
    }

    /// The same, of what the window shows.
    pub async fn screenshot_window(&self, name: &str) -> PathBuf {
        self.stretched_screenshot(name, false).await
    }

    async fn stretched_screenshot(&self, name: &str, whole_page: bool) -> PathBuf {
        let size = self
            .eval(
                "return [window.outerWidth, window.outerHeight, \
                 document.documentElement.scrollHeight, window.innerHeight]",
            )
            .await;
        let number = |i: usize| size[i].as_u64().and_then(|n| u32::try_from(n).ok());
        let (width, height, page, inner) = (number(0), number(1), number(2), number(3));
        if let (Some(width), Some(height), Some(page), Some(inner)) = (width, height, page, inner)
            && whole_page
            && page > inner
        {
            self.set_window_size(width, (height + page - inner).min(6000))
                .await;
        }
        let png = self
            .command(
                reqwest::Method::GET,
                &format!("{}/screenshot", self.session),
                None,
            )
            .await;
        if let (Some(width), Some(height)) = (width, height) {
            self.set_window_size(width, height).await;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("screenshot is base64"))
            .expect("screenshot decodes");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot written");
        path
    }

    /// Ends the session; Chromium exits with it.
    pub async fn close(self) {
        let _ = self
            .client
            .delete(&self.session)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group, and Chromium's processes are in it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("UI_SCREENSHOT_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots"),
        PathBuf::from,
    )
}

/// Starts chromedriver on a port of its choosing and reads the port from its banner.
/// The browsers it starts inherit `time_zone` as `TZ`.
async fn spawn_driver(chromedriver: &Path, time_zone: &str) -> (Child, u16) {
    use std::os::unix::process::CommandExt;

    let mut driver = Command::new(chromedriver)
        .args(["--port=0", "--log-level=WARNING"])
        .env("TZ", time_zone)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
    let mut stdout = driver.stdout.take().expect("piped stdout");
    let (found, port) = tokio::sync::oneshot::channel();
    // Reads the banner, then keeps draining so the driver never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut found = Some(found);
        let mut seen = String::new();
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = stdout.read(&mut buffer) {
            if found.is_none() {
                continue;
            }
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
            if let Some(port) = banner_port(&seen)
                && let Some(found) = found.take()
            {
                let _ = found.send(port);
            }
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(20), port)
        .await
        .expect("chromedriver started within 20 s")
        .expect("chromedriver printed its port");
    (driver, port)
}

/// The port in "ChromeDriver was started successfully on port 41235."
fn banner_port(text: &str) -> Option<u16> {
    const BANNER: &str = "started successfully on port ";
    let rest = &text[text.find(BANNER)? + BANNER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    // Wait for the character after the number, so a half-read number is never taken.
    if digits.len() == rest.len() {
        return None;
    }
    digits.parse().ok()
}
