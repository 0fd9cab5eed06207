// Package artifact runs build hooks at publish time: it unpacks the bundle
// the hosts will get, installs its dependencies (from a cache keyed like
// the agent's dependency key), runs the hook as an unprivileged user, and
// archives the hook's declared outputs reproducibly in the bundle format,
// for the publisher to sign and ship beside the bundle. It never resolves
// a secret: a hook that would read one is refused.
package artifact
