// Command standin is every binary in the stand-in images of the app's
// Compose services (testenv.BuildAppStandins), built statically
// (CGO_ENABLED=0) and linked under the names of the tools the images'
// healthchecks run. It picks what to be from the base name it is run as,
// or from its first argument when run as "standin":
//
//	sh -c "CMD ..."                      CMD run as one of the applets below
//	pg_isready [-h H] [-p P]             exit 0 when PostgreSQL answers on 127.0.0.1:5432
//	redis-cli ping                       exit 0 on +PONG from 127.0.0.1:6379
//	curl -f URL                          exit 0 on a 2xx answer to GET URL
//	wget --quiet --tries=1 --spider URL  likewise
//	rabbitmq-diagnostics -q ping         exit 0 when 127.0.0.1:5672 accepts
//	standin db        proxy :5432 to the host's PostgreSQL (default gateway,
//	                  port $STANDIN_UPSTREAM_PORT)
//	standin redis     Redis on :6379 (miniredis)
//	standin mailhog   SMTP sink on :1025, HTTP 200 on :8025
//	standin rabbitmq  :5672 closes AMQP connections at once, HTTP 200 on :15672
//
// Services stop cleanly on SIGTERM or SIGINT. The code is in package
// internal/testenv/standin (here the go command would not vet or test it).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cohuron/deploy/internal/testenv/standin"
)

func main() {
	// PID 1 in a container gets no default signal handling: stop on TERM.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := standin.Run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
