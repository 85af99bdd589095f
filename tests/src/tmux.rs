//! A program running in a detached tmux session, driven like an operator would: keys in with
//! `send-keys`, the screen out with `capture-pane`. The session is killed when the guard drops,
//! passed or failed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// One tmux session on its own server socket (so tests never touch the operator's tmux).
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Starts `command` (run by tmux through `sh -c`) in a `cols`×`rows` window. `env` is set in
    /// the command's environment.
    pub fn start(
        name: &str,
        cols: u16,
        rows: u16,
        command: &str,
        env: &[(&str, &str)],
    ) -> Result<Tmux> {
        let socket = format!("skiff-test-{}-{name}", std::process::id());
        let session = name.to_string();
        let mut cmd = Command::new("tmux");
        cmd.args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            &session,
        ])
        .args(["-x", &cols.to_string(), "-y", &rows.to_string()]);
        for (k, v) in env {
            cmd.args(["-e", &format!("{k}={v}")]);
        }
        cmd.arg(command);
        let out = cmd
            .output()
            .context("running tmux (install Debian's tmux)")?;
        if !out.status.success() {
            bail!(
                "tmux new-session failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let t = Tmux { socket, session };
        // Keep the pane after the program exits, so its last screen can be read.
        t.tmux(&["set-option", "-t", &t.session, "remain-on-exit", "on"])?;
        Ok(t)
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!(
                "tmux {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends keys as tmux names them (`"j"`, `"Enter"`, `"Escape"`, `"C-c"`, `":"`).
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.tmux(&args).map(drop)
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", &self.session, "-l", text])
            .map(drop)
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    /// Waits until the screen satisfies `pred`; returns that screen, or fails with the last one.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen()?;
            if pred(&screen) {
                return Ok(screen);
            }
            if start.elapsed() > timeout {
                bail!("waited {timeout:?} for {what}; the screen shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen contains `text`.
    pub fn wait_text(&self, text: &str, timeout: Duration) -> Result<String> {
        self.wait_for(&format!("{text:?}"), timeout, |s| s.contains(text))
    }

    /// Resizes the window.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.tmux(&[
            "resize-window",
            "-t",
            &self.session,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ])
        .map(drop)
    }

    /// Whether the program in the pane has exited.
    pub fn exited(&self) -> Result<bool> {
        Ok(self
            .tmux(&["display-message", "-p", "-t", &self.session, "#{pane_dead}"])?
            .trim()
            == "1")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
