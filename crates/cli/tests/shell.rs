//! `sandkit shell` and `sandkit exec -t` in a real terminal: tmux runs them, and the test
//! types keystrokes, resizes the window and presses Ctrl-C, reading what the terminal
//! shows. tmux must be installed (the test script installs it); without it this fails
//! saying so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the terminal may take to show what a step expects.
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

/// A tmux server of our own (its own socket), killed at the end.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Self {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|output| output.status.success()),
            "tmux is missing: install it (`apt-get install tmux`); scripts/test.sh does"
        );
        Self {
            socket: format!("sandkit-test-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        self.run(&[&["send-keys", "-t", "t"], keys].concat());
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen shows `text` (a line of it, trimmed, equals `text`).
    fn wait_for_line(&self, text: &str) {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.lines().any(|line| line.trim() == text) {
                return;
            }
            assert!(
                started.elapsed() < SHOWN_WITHIN,
                "the terminal never showed the line `{text}`; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

fn sandkit(state: &Path) -> String {
    let config = serde_json::json!({ "state_dir": state }).to_string();
    format!(
        "{} --provider local-process --config '{config}'",
        env!("CARGO_BIN_EXE_sandkit")
    )
}

/// `sandkit` on the local-process provider with its state in `state`, run here.
fn run_sandkit(state: &Path, args: &[&str]) -> std::process::Output {
    let config = serde_json::json!({ "state_dir": state }).to_string();
    Command::new(env!("CARGO_BIN_EXE_sandkit"))
        .args(["--provider", "local-process", "--config", &config])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sandkit runs")
}

fn create(state: &Path) -> String {
    let output = run_sandkit(state, &["create", "--json"]);
    assert!(
        output.status.success(),
        "create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    info["id"].as_str().expect("an id").to_owned()
}

/// Runs `command` in a 100x30 tmux window; its exit code lands in `exit_file`.
fn start(tmux: &Tmux, command: &str, exit_file: &Path) {
    // The pane stays after the command, so a failure can be read off the screen.
    let line = format!("{command}; echo $? > {}; sleep 60", exit_file.display());
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &line,
    ]);
}

fn exit_code(exit_file: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(exit_file)
            && let Ok(code) = text.trim().parse()
        {
            return code;
        }
        assert!(started.elapsed() < SHOWN_WITHIN, "the session did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn shell_takes_keys_follows_resizes_and_passes_ctrl_c_on() {
    let state = tempfile::tempdir().unwrap();
    let id = create(state.path());
    let tmux = Tmux::new("shell");
    let exit_file = state.path().join("exit");
    start(
        &tmux,
        &format!("{} shell {id}", sandkit(state.path())),
        &exit_file,
    );

    // Keys typed before the shell is up would be echoed twice: wait for its prompt.
    tmux.wait_for_line("#");
    tmux.keys(&["stty size; tty | sed 's,[0-9]*$,N,'", "Enter"]);
    tmux.wait_for_line("30 100");
    tmux.wait_for_line("/dev/pts/N");

    tmux.run(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    // The size travels with SIGWINCH; ask until the shell has seen it.
    let started = Instant::now();
    loop {
        tmux.keys(&["clear; stty size", "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        if tmux.screen().lines().any(|line| line.trim() == "40 120") {
            break;
        }
        assert!(
            started.elapsed() < SHOWN_WITHIN,
            "no resize: {}",
            tmux.screen()
        );
    }

    // Ctrl-C interrupts the foreground command, not the shell or sandkit.
    tmux.keys(&["sleep 300", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    let pressed = Instant::now();
    tmux.keys(&["C-c"]);
    tmux.keys(&["echo alive-$((40+2))", "Enter"]);
    tmux.wait_for_line("alive-42");
    assert!(
        pressed.elapsed() < Duration::from_secs(10),
        "Ctrl-C did not end `sleep`"
    );

    tmux.keys(&["exit 7", "Enter"]);
    assert_eq!(
        exit_code(&exit_file),
        7,
        "sandkit shell exits with the shell's code"
    );
    assert!(run_sandkit(state.path(), &["rm", &id]).status.success());
}

#[test]
fn exec_tty_runs_a_program_on_the_terminal_and_restores_ours() {
    let state = tempfile::tempdir().unwrap();
    let id = create(state.path());
    let tmux = Tmux::new("exec");
    let exit_file = state.path().join("exit");
    // After sandkit ends, our terminal must be back in cooked mode (`-icanon` absent).
    let command = format!(
        "{} exec -t {id} -- sh -c 'test -t 0 && test -t 1 && echo on-a-tty; read line; echo got-$line; exit 3'; code=$?; stty -a | grep -q -- -icanon && echo raw-still || echo cooked-again; (exit $code)",
        sandkit(state.path())
    );
    start(&tmux, &command, &exit_file);
    tmux.wait_for_line("on-a-tty");
    tmux.keys(&["hello", "Enter"]);
    tmux.wait_for_line("got-hello");
    tmux.wait_for_line("cooked-again");
    assert_eq!(exit_code(&exit_file), 3);
    assert!(run_sandkit(state.path(), &["rm", &id]).status.success());
}
