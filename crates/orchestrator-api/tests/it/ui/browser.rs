//! Headless Chromium driven over WebDriver with thirtyfour (Debian's `chromium` and
//! `chromium-driver`). A [`Browser`] dereferences to thirtyfour's `WebDriver`, so the
//! tests find elements and read them with its calls; this module adds what they share:
//! starting the driver, waiting with a deadline, and screenshots.
//!
//! Each [`Browser`] starts its own chromedriver on a port chosen here, in a process group
//! of its own, so that dropping it (even when a test panics) kills the driver and every
//! Chromium process it started.

use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use thirtyfour::extensions::query::ElementPollerWithTimeout;
use thirtyfour::prelude::*;
use thirtyfour::{ChromeCapabilities, WebDriver};
use tokio::time::Instant;

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a wait (and an element query) polls before failing the test.
pub const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
/// How long chromedriver may take to answer `/status` once started.
const DRIVER_START: Duration = Duration::from_secs(20);

/// What matters on a test machine: run as root without a display or GPU, the same
/// pixels and language everywhere, and no traffic beyond the loopback address (no
/// QUIC, updates, sync or background fetches).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    // Tests run as root in CI, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1280,900",
    "--lang=en-US",
];

pub struct Browser {
    // Fields drop in this order: the driver's process group is killed before the
    // WebDriver handle goes (so a test that panicked does not wait on a session to
    // close), and the profile is removed last.
    _driver: DriverProcess,
    webdriver: WebDriver,
    _profile: tempfile::TempDir,
}

impl Deref for Browser {
    type Target = WebDriver;

    fn deref(&self) -> &WebDriver {
        &self.webdriver
    }
}

/// The binary at `$variable`, else at `default`; a missing one fails with what to
/// install, so a machine without Chromium can never pass these tests silently.
fn binary(variable: &str, default: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if !path.is_file() {
        bail!(
            "the dashboard tests need headless Chromium and ChromeDriver, and {} does not \
             exist. Install them with `apt-get install -y chromium chromium-driver` (.ci/run \
             does), or point {variable} at the binary.",
            path.display()
        );
    }
    Ok(path)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a 1280×900 window, in
    /// UTC whatever the machine's time zone, so that what the pages show does not depend
    /// on where the tests run.
    pub async fn start() -> anyhow::Result<Browser> {
        Self::start_in_time_zone("UTC").await
    }

    /// The same, with the browser's clock in `time_zone` (an IANA name such as
    /// `Asia/Kolkata`): Chromium takes its zone from `TZ`, which it inherits from the
    /// driver.
    pub async fn start_in_time_zone(time_zone: &str) -> anyhow::Result<Browser> {
        let chromium = binary("CHROMIUM_BIN", DEFAULT_CHROMIUM)?;
        let chromedriver = binary("CHROMEDRIVER_BIN", DEFAULT_CHROMEDRIVER)?;
        let process = DriverProcess::start(&chromedriver, time_zone).await?;
        let profile = tempfile::tempdir().context("creating a Chromium profile folder")?;

        let mut capabilities = ChromeCapabilities::new();
        capabilities.set_binary(&chromium.to_string_lossy())?;
        for arg in CHROMIUM_ARGS {
            capabilities.add_arg(arg)?;
        }
        capabilities.add_arg(&format!("--user-data-dir={}", profile.path().display()))?;
        let webdriver = WebDriver::builder(process.url(), capabilities)
            // Element queries (`query(..).first()`) wait as long as `wait_for` does.
            .poller(Arc::new(ElementPollerWithTimeout::new(WAIT, POLL)))
            .request_timeout(Duration::from_secs(60))
            .await
            .context("starting a Chromium session")?;
        Ok(Browser {
            _driver: process,
            webdriver,
            _profile: profile,
        })
    }

    /// Polls `check` until it gives a value and returns that, failing after [`WAIT`]
    /// with `what` and what the page shows. A WebDriver error counts as "not yet": the
    /// pages re-render as they poll the API, so an element found a moment ago may have
    /// been replaced (stale) by the time it is read.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> WebDriverResult<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            let last_error = match check().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => None,
                Err(error) => Some(error),
            };
            if Instant::now() >= deadline {
                let error = last_error.map_or_else(String::new, |e| format!(" (last: {e})"));
                bail!(
                    "waited {WAIT:?} for {what}{error}; the page shows {}",
                    self.shown_text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's main text, to say what was on screen when a wait gave up.
    async fn shown_text(&self) -> String {
        let main = match self.find_now("#main").await {
            Ok(Some(main)) => Ok(main),
            _ => self.find(By::Css("body")).await,
        };
        match main {
            Ok(main) => main.text().await.unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        }
    }

    /// The first element `css` selects right now, if any, without waiting.
    pub async fn find_now(&self, css: &str) -> WebDriverResult<Option<WebElement>> {
        self.query(By::Css(css)).nowait().first_opt().await
    }

    /// Replaces the text of an input or text area by typing `text`, once it is on the
    /// page: a page just navigated to may still be loading (`find` looks once, and CI
    /// once ran it before the sign-in form was there).
    pub async fn type_into(&self, css: &str, text: &str) -> WebDriverResult<()> {
        let input = self.query(By::Css(css)).first().await?;
        input.clear().await?;
        input.send_keys(text).await
    }

    /// Signs in to the dashboard at `base` (`http://127.0.0.1:PORT`) with an API token,
    /// as a person would: the sign-in form, then the tasks page naming the tenant.
    pub async fn sign_in(&self, base: &str, token: &str) -> anyhow::Result<()> {
        self.goto(&format!("{base}/ui/sign-in")).await?;
        self.type_into("#token", token).await?;
        self.find(By::Css("#sign-in")).await?.click().await?;
        self.wait_for("the dashboard to name the signed-in tenant", async || {
            Ok(self.find_now("#who-tenant").await?.is_some().then_some(()))
        })
        .await
    }

    /// Resizes the window, leaving it where it is.
    pub async fn set_window_size(&self, width: u32, height: u32) -> WebDriverResult<()> {
        let rect = self.get_window_rect().await?;
        self.set_window_rect(rect.x, rect.y, width, height).await
    }

    /// The height of the viewport, the part of the window that shows the page.
    /// WebDriver's window rectangle is the outer window, so this reads the document
    /// element's `clientHeight`, which is `innerHeight` when there are no scrollbars
    /// (`--hide-scrollbars`).
    pub async fn viewport_height(&self) -> anyhow::Result<u32> {
        let document = self.find(By::Css("html")).await?;
        number_property(&document, "clientHeight").await
    }

    /// Saves a PNG of the whole page (the window is stretched to the page's height for
    /// the shot) as `<dir>/<name>.png`, where dir is `UI_SCREENSHOT_DIR` or
    /// `target/ui-screenshots`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.save_screenshot(name, true).await
    }

    /// The same, of what the window shows.
    pub async fn screenshot_window(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.save_screenshot(name, false).await
    }

    async fn save_screenshot(&self, name: &str, whole_page: bool) -> anyhow::Result<PathBuf> {
        let window = self.get_window_rect().await?;
        let (width, height) = (u32::try_from(window.width)?, u32::try_from(window.height)?);
        let document = self.find(By::Css("html")).await?;
        let page = number_property(&document, "scrollHeight").await?;
        let viewport = number_property(&document, "clientHeight").await?;
        let stretch = whole_page && page > viewport;
        if stretch {
            self.set_window_size(width, (height + page - viewport).min(6000))
                .await?;
        }
        let png = self.screenshot_as_png().await;
        if stretch {
            self.set_window_size(width, height).await?;
        }
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png?).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Ends the session, and Chromium with it; dropping the browser kills what is left.
    pub async fn close(self) {
        let _ = self.webdriver.quit().await;
    }
}

/// A DOM property that holds a whole number of pixels.
async fn number_property(element: &WebElement, name: &str) -> anyhow::Result<u32> {
    let value = element.prop(name).await?.unwrap_or_default();
    value
        .parse()
        .with_context(|| format!("{name} is {value:?}, not a whole number"))
}

/// What the tests read from elements beyond thirtyfour's own calls.
pub trait ElementText {
    /// The element's `textContent`: all of its text, as the DOM holds it, whether or not
    /// it is rendered (WebDriver's own `text()` gives the rendered text only).
    async fn text_content(&self) -> WebDriverResult<String>;
}

impl ElementText for WebElement {
    async fn text_content(&self) -> WebDriverResult<String> {
        Ok(self.prop("textContent").await?.unwrap_or_default())
    }
}

pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("UI_SCREENSHOT_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots"),
        PathBuf::from,
    )
}

/// A chromedriver leading a process group of its own; Chromium's processes join it.
struct DriverProcess {
    child: Child,
    port: u16,
}

impl DriverProcess {
    /// Starts chromedriver on a free loopback port and waits until it says it is ready.
    /// The browsers it starts inherit `time_zone` as `TZ`. The port is free when picked
    /// but another process may take it before chromedriver binds it; then chromedriver
    /// exits, and another port is tried.
    async fn start(chromedriver: &Path, time_zone: &str) -> anyhow::Result<DriverProcess> {
        let mut tries = 3;
        loop {
            let port = orchestrator_testkit::ports::free_port();
            let child = Command::new(chromedriver)
                .args([format!("--port={port}"), "--log-level=WARNING".into()])
                .env("TZ", time_zone)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {}", chromedriver.display()))?;
            // Owned from here, so that any failure below kills it.
            let mut process = DriverProcess { child, port };
            match process.wait_until_ready().await {
                Ok(()) => return Ok(process),
                Err(NotReady::Exited(status)) if tries > 1 => {
                    tries -= 1;
                    eprintln!("chromedriver on port {port} {status}; trying another port");
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls chromedriver's `/status` until it reports ready, for [`DRIVER_START`].
    async fn wait_until_ready(&mut self) -> Result<(), NotReady> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| NotReady::Other(e.to_string()))?;
        let status_url = format!("{}/status", self.url());
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            let answer = match client.get(&status_url).send().await {
                Ok(response) => response.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            };
            if answer.is_some_and(|status| status["value"]["ready"] == true) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NotReady::Other(format!(
                    "chromedriver did not answer {status_url} within {DRIVER_START:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("chromedriver {0} before it was ready")]
    Exited(std::process::ExitStatus),
    #[error("{0}")]
    Other(String),
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        // The driver leads its own process group, and Chromium's processes are in it.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
