package envvars

import "os"

// Variable is an environment variable the programs read.
type Variable struct {
	Name string
	Doc  string
}

// Get returns the variable's value ("" when unset).
func (v Variable) Get() string { return os.Getenv(v.Name) }

// Lookup returns the value and whether it is set.
func (v Variable) Lookup() (string, bool) { return os.LookupEnv(v.Name) }

var (
	// CosignPassword decrypts cosign.key (same name as the cosign CLI uses).
	CosignPassword = Variable{"COSIGN_PASSWORD", "password of an encrypted cosign private key"}
	// S3Endpoint overrides the S3 endpoint (MinIO); the AWS SDK reads it too.
	S3Endpoint = Variable{"AWS_ENDPOINT_URL_S3", "S3 endpoint override, e.g. http://127.0.0.1:9000 for MinIO (path-style)"}
	// CI marks a CI run: tests fail instead of skipping for a missing component.
	CI = Variable{"CI", "when true, tests fail rather than skip for a missing component"}
	// TestBin is where the test setup looks for minio and cosign first.
	TestBin = Variable{"COHURON_TEST_BIN", "directory with minio and cosign binaries for tests"}
	// TestS3 points the conformance suite at a real S3 bucket: s3://bucket/prefix.
	TestS3 = Variable{"COHURON_TEST_S3", "s3://bucket/prefix of a real S3 bucket to run the store suite against"}

	// NotifySocket is set by systemd for Type=notify units (sd_notify).
	NotifySocket = Variable{"NOTIFY_SOCKET", "systemd notification socket (set by systemd)"}
	// WatchdogUsec is the systemd watchdog interval in microseconds.
	WatchdogUsec = Variable{"WATCHDOG_USEC", "systemd watchdog interval (set by systemd)"}
	// JournalStream is set when stderr goes to the journal: logs become JSON.
	JournalStream = Variable{"JOURNAL_STREAM", "set by systemd when output goes to the journal; the agent then logs JSON"}
)

// DockerHost points docker and compose at the engine (the agent passes it on).
var DockerHost = Variable{"DOCKER_HOST", "Docker engine socket for compose, e.g. unix:///run/docker.sock (docker's default when unset)"}

// CrashAt makes the agent kill itself at a journal point (crash-injection tests only).
var CrashAt = Variable{"COHURON_AGENT_CRASH_AT", "test only: the agent SIGKILLs itself at this journal point"}

// ReliabilityOut is where proving-ground tests record what they proved (make reliability).
var ReliabilityOut = Variable{"COHURON_RELIABILITY_OUT", "test only: directory where fault and attack tests record their cases for docs/RELIABILITY.md"}

// BuildUser is the default of the publisher's --build-user: the account
// publish-time build hooks run as when the publisher is root.
var BuildUser = Variable{"COHURON_BUILD_USER", "unprivileged account that runs publish-time build hooks when the publisher runs as root (default of --build-user)"}

// All lists every variable, for documentation and `--help`.
var All = []Variable{CosignPassword, S3Endpoint, CI, TestBin, TestS3, NotifySocket, WatchdogUsec, JournalStream, DockerHost, CrashAt, ReliabilityOut, BuildUser}
