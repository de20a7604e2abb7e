"""Drives `berth exec -it` through a real pseudo-terminal, as a person at a
terminal would: used by tests/tests/exec.rs.

    tty_session.py BERTH ADDR JOB         # berth exec -it JOB sh
    tty_session.py BERTH ADDR --run IMAGE # berth run -it IMAGE sh

Prints what it saw as JSON: the terminal size the command reported before
and after a resize, whether Ctrl-C cut a `sleep 30` short, and the exit code.
"""
import fcntl, json, os, pty, select, signal, struct, sys, termios, time

berth, addr, job = sys.argv[1:4]
if job == "--run":
    argv = [berth, "--addr", addr, "run", "-it", sys.argv[4], "sh"]
else:
    argv = [berth, "--addr", addr, "exec", "-it", job, "sh"]


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


pid, master = pty.fork()
if pid == 0:
    set_size(sys.stdin.fileno(), 40, 100)
    os.execv(berth, argv)

seen = b""


def expect(token, timeout=20):
    global seen
    deadline = time.time() + timeout
    while token not in seen:
        left = deadline - time.time()
        if left <= 0:
            raise SystemExit(f"timed out waiting for {token!r}; saw {seen[-400:]!r}")
        r, _, _ = select.select([master], [], [], left)
        if r:
            try:
                seen += os.read(master, 4096)
            except OSError:
                raise SystemExit(f"terminal closed waiting for {token!r}; saw {seen[-400:]!r}")


def send(text):
    os.write(master, text.encode())


set_size(master, 40, 100)
time.sleep(0.5)
# Markers are spelled so that the terminal's echo of the typed line does
# not contain them: only the command's output does.
send("stty size; echo DO''NE1\n")
expect(b"DONE1\r\n")
before = seen.split(b"DO''NE1")[-1]
# A window resize: the kernel tells berth (SIGWINCH), berth tells the daemon.
set_size(master, 50, 120)
os.kill(pid, signal.SIGWINCH)
time.sleep(0.5)
send("stty size; echo DO''NE2\n")
expect(b"DONE2\r\n")
after = seen.split(b"DO''NE2")[-1]
start = time.time()
send("sleep 30; echo SL''EPT\n")
time.sleep(1)
send("\x03")  # Ctrl-C: the remote terminal turns it into SIGINT
send("echo INTER''RUPTED\n")
expect(b"INTERRUPTED\r\n")
interrupted = time.time() - start < 20 and b"SLEPT\r\n" not in seen
send("exit 7\n")
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "before": before.decode(errors="replace"),
    "after": after.decode(errors="replace"),
    "interrupted": interrupted,
    "exit_code": os.waitstatus_to_exitcode(status),
}))
