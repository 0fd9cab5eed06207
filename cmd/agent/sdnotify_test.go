package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestSDNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	sdNotify("READY=1")
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("systemd got %q, %v; want READY=1", buf[:n], err)
	}
	t.Setenv("WATCHDOG_USEC", "10000000")
	if got := watchdogInterval(); got != 5*time.Second {
		t.Fatalf("watchdog interval %s, want half of 10s", got)
	}
	t.Setenv("WATCHDOG_USEC", "")
	if watchdogInterval() != 0 {
		t.Fatal("watchdog on without WATCHDOG_USEC")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	sdNotify("READY=1") // outside systemd: a no-op, no panic
}
