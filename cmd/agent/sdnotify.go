package main

import (
	"net"
	"strconv"
	"time"

	"github.com/cohuron/deploy/pkg/envvars"
)

// sdNotify sends a state line to systemd (READY=1, WATCHDOG=1, STATUS=…);
// it does nothing outside a Type=notify unit.
func sdNotify(state string) {
	sock := envvars.NotifySocket.Get()
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	// Best effort: systemd may have gone away; nothing to do about it here.
	_, _ = conn.Write([]byte(state))
	_ = conn.Close()
}

// watchdogInterval is half the systemd watchdog timeout, or 0 when off.
func watchdogInterval() time.Duration {
	us, err := strconv.ParseInt(envvars.WatchdogUsec.Get(), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}
