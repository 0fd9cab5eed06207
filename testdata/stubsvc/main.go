// Command stubsvc is a tiny TCP service for the Docker Compose tests, meant
// to be built statically into a FROM-scratch image (testenv.BuildStubImage).
//
//	stub        listen on 127.0.0.1:$PORT and answer each connection with
//	            "+PONG $NAME\r\n" ($NAME defaults to "stub"), then close it
//	stub check  exit 0 when 127.0.0.1:$PORT accepts a connection, else 1
//	            (the container's healthcheck)
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		fmt.Fprintln(os.Stderr, "stub: PORT is not set")
		os.Exit(2)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	if len(os.Args) > 1 && os.Args[1] == "check" {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stub check:", err)
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "stub: unknown argument %q (want none or \"check\")\n", os.Args[1])
		os.Exit(2)
	}
	name := os.Getenv("NAME")
	if name == "" {
		name = "stub"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stub:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "stub %s listening on %s\n", name, addr)
	// PID 1 in a container gets no default signal handling: exit on TERM.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "stub:", err)
			os.Exit(1)
		}
		go func(c net.Conn) {
			defer c.Close()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "+PONG %s\r\n", name)
		}(c)
	}
}
