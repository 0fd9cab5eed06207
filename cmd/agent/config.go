package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cohuron/deploy/pkg/envvars"
	"github.com/cohuron/deploy/pkg/manifest"
	"github.com/cohuron/deploy/pkg/strictyaml"
)

// DefaultConfigFile is read when --config is not given (missing is fine).
const DefaultConfigFile = "/etc/cohuron-agent/agent.yaml"

// DefaultSecretsRefresh is how often `run` looks for rotated secrets.
const DefaultSecretsRefresh = 5 * time.Minute

// Config is /etc/cohuron-agent/agent.yaml; every field has a flag.
type Config struct {
	Store          string            `yaml:"store"`
	Env            string            `yaml:"env"`
	Policy         string            `yaml:"policy,omitempty"`
	Key            string            `yaml:"key,omitempty"`
	Root           string            `yaml:"root,omitempty"`
	Backups        string            `yaml:"backups,omitempty"`
	StateDir       string            `yaml:"stateDir,omitempty"`
	Interval       manifest.Duration `yaml:"interval,omitempty"`
	Jitter         manifest.Duration `yaml:"jitter,omitempty"`
	HostID         string            `yaml:"hostId,omitempty"`
	MetricsAddr    string            `yaml:"metricsAddr,omitempty"`
	Keep           int               `yaml:"keep,omitempty"`
	ProcessManager string            `yaml:"processManager,omitempty"` // pm2 (default) or systemd
	UnitDir        string            `yaml:"unitDir,omitempty"`        // systemd units (default /etc/systemd/system)
	PM2            string            `yaml:"pm2,omitempty"`            // pm2 executable
	PM2Home        string            `yaml:"pm2Home,omitempty"`        // default <stateDir>/pm2
	// LegacyPM2Home is the PM2_HOME of the old deploy script's daemon
	// (it ran as root over SSM): the first release activated on an adopted
	// host stops it, a rollback to the adopted tree resurrects it
	// (default /root/.pm2; "off": leave it alone).
	LegacyPM2Home string            `yaml:"legacyPM2Home,omitempty"`
	AppLogDir     string            `yaml:"appLogDir,omitempty"` // app output under PM2 when run as spec.user (default /var/log/cohuron)
	SecretsDir    string            `yaml:"secretsDir,omitempty"`
	AWSRegion     string            `yaml:"awsRegion,omitempty"`
	S3Endpoint    string            `yaml:"s3Endpoint,omitempty"`
	StoreTimeout  manifest.Duration `yaml:"storeTimeout,omitempty"` // a stalled S3 request fails after this (default 30s)
	LogFormat     string            `yaml:"logFormat,omitempty"`    // text or json (default: json under systemd)
	// SecretsRefresh is how often `run` resolves the running release's
	// secrets again, to notice one rotated behind an unchanged reference
	// (default 5m; 0 turns it off: only new releases resolve secrets).
	SecretsRefresh *manifest.Duration `yaml:"secretsRefresh,omitempty"`
}

func defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Root: "/opt/cohuron", Backups: "/opt/cohuron-backups", StateDir: "/var/lib/cohuron-agent",
		Interval: manifest.Duration{Duration: 30 * time.Second}, Jitter: manifest.Duration{Duration: 5 * time.Second},
		HostID: host, MetricsAddr: "127.0.0.1:9464", Keep: 5, PM2: "pm2", LegacyPM2Home: "/root/.pm2",
		S3Endpoint: envvars.S3Endpoint.Get(),
	}
}

// configFlags binds the flags that override the config file.
type configFlags struct {
	// statusOnly: `agent status` needs only the state directory.
	statusOnly bool
	file       string
	set        func(*Config)
	fs         *flag.FlagSet
}

func addConfigFlags(fs *flag.FlagSet) *configFlags {
	cf := &configFlags{fs: fs}
	fs.StringVar(&cf.file, "config", DefaultConfigFile, "agent configuration file")
	var c Config
	str := func(p *string, name, usage string) { fs.StringVar(p, name, "", usage) }
	str(&c.Store, "store", "store URL: file:///abs/dir or s3://bucket/prefix")
	str(&c.Env, "env", "environment this host belongs to")
	str(&c.Policy, "policy", "trust policy file")
	str(&c.Key, "key", "public key file: shorthand for a policy trusting this one key")
	str(&c.Root, "root", "live release path, a symlink (default /opt/cohuron)")
	str(&c.Backups, "backups", "release directory kept for rollback (default /opt/cohuron-backups)")
	str(&c.StateDir, "state-dir", "agent state (default /var/lib/cohuron-agent)")
	str(&c.HostID, "host-id", "host name in status reports (default the hostname)")
	str(&c.MetricsAddr, "metrics-addr", "Prometheus metrics address for `run` (default 127.0.0.1:9464; \"off\" to disable)")
	str(&c.PM2, "pm2", "pm2 executable")
	str(&c.ProcessManager, "process-manager", "pm2 (default) or systemd")
	str(&c.UnitDir, "unit-dir", "where the systemd manager writes units (default /etc/systemd/system)")
	str(&c.PM2Home, "pm2-home", "PM2_HOME (default <state-dir>/pm2)")
	str(&c.LegacyPM2Home, "legacy-pm2-home", "PM2_HOME of the old deploy script's PM2, stopped when an adopted host first activates a release (default /root/.pm2; off)")
	str(&c.AppLogDir, "app-log-dir", "application output under PM2 when processes run as spec.user (default /var/log/cohuron)")
	str(&c.SecretsDir, "secrets-dir", "root for {file: PATH} secret references")
	str(&c.S3Endpoint, "s3-endpoint", "S3 endpoint override (MinIO)")
	str(&c.LogFormat, "log-format", "text or json (default json under systemd)")
	var interval, jitter time.Duration
	fs.DurationVar(&interval, "interval", 0, "poll interval for `run` (default 30s)")
	fs.DurationVar(&jitter, "jitter", 0, "random extra delay per poll (default 5s)")
	var storeTimeout time.Duration
	fs.DurationVar(&storeTimeout, "store-timeout", 0, "an S3 request with no answer or no data for this long fails and is retried (default 30s)")
	keep := fs.Int("keep", 0, "previous good releases kept (default 5)")
	var secretsRefresh time.Duration
	fs.DurationVar(&secretsRefresh, "secrets-refresh", 0, "how often the running release's secrets are resolved again to notice a rotation (default 5m; 0: only with new releases)")
	cf.set = func(dst *Config) {
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "store":
				dst.Store = c.Store
			case "env":
				dst.Env = c.Env
			case "policy":
				dst.Policy = c.Policy
			case "key":
				dst.Key = c.Key
			case "root":
				dst.Root = c.Root
			case "backups":
				dst.Backups = c.Backups
			case "state-dir":
				dst.StateDir = c.StateDir
			case "host-id":
				dst.HostID = c.HostID
			case "metrics-addr":
				dst.MetricsAddr = c.MetricsAddr
			case "pm2":
				dst.PM2 = c.PM2
			case "process-manager":
				dst.ProcessManager = c.ProcessManager
			case "unit-dir":
				dst.UnitDir = c.UnitDir
			case "pm2-home":
				dst.PM2Home = c.PM2Home
			case "legacy-pm2-home":
				dst.LegacyPM2Home = c.LegacyPM2Home
			case "app-log-dir":
				dst.AppLogDir = c.AppLogDir
			case "secrets-dir":
				dst.SecretsDir = c.SecretsDir
			case "s3-endpoint":
				dst.S3Endpoint = c.S3Endpoint
			case "log-format":
				dst.LogFormat = c.LogFormat
			case "interval":
				dst.Interval.Duration = interval
			case "jitter":
				dst.Jitter.Duration = jitter
			case "store-timeout":
				dst.StoreTimeout.Duration = storeTimeout
			case "keep":
				dst.Keep = *keep
			case "secrets-refresh":
				dst.SecretsRefresh = &manifest.Duration{Duration: secretsRefresh}
			}
		})
	}
	return cf
}

// load reads the config file (when present) and applies the flags.
func (cf *configFlags) load() (Config, error) {
	c := defaults()
	explicit := false
	cf.fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	data, err := os.ReadFile(cf.file)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	case err != nil:
		return c, fmt.Errorf("reading agent config: %w", err)
	default:
		if _, err := strictyaml.Decode(cf.file, data, 64<<10, &c); err != nil {
			return c, err
		}
	}
	cf.set(&c)
	if c.PM2Home == "" {
		c.PM2Home = c.StateDir + "/pm2"
	}
	if c.SecretsRefresh == nil {
		c.SecretsRefresh = &manifest.Duration{Duration: DefaultSecretsRefresh}
	}
	var missing []string
	if cf.statusOnly {
		return c, nil
	}
	if c.Store == "" {
		missing = append(missing, "store (--store)")
	}
	if c.Env == "" {
		missing = append(missing, "env (--env)")
	}
	if c.Policy == "" && c.Key == "" {
		missing = append(missing, "policy (--policy FILE or --key cosign.pub)")
	}
	if c.ProcessManager != "" && c.ProcessManager != "pm2" && c.ProcessManager != "systemd" {
		missing = append(missing, fmt.Sprintf("processManager: expected pm2 or systemd, found %q", c.ProcessManager))
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("missing configuration: %v; set them in %s or by flag", missing, cf.file)
	}
	return c, nil
}
