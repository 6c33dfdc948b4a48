package main

import (
	"net"
	"net/http"
	"os"
	"time"
)

// defaultAPITimeout bounds how long a command waits for a master to start
// answering: a stopped or hung master must not hang the command for ever.
const defaultAPITimeout = 60 * time.Second

// apiHTTPClient returns the client the commands that talk to a master
// use. Connecting and the wait for the answer's headers are bounded (by
// REGENT_API_TIMEOUT, a Go duration, when set); a body may stream for as
// long as it lasts, as `regent build logs --follow` needs. A bad
// REGENT_API_TIMEOUT is reported by apiTimeout's caller.
func apiHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = timeout
	return &http.Client{Transport: t}
}

// apiTimeout reads REGENT_API_TIMEOUT, or gives the default.
func apiTimeout() (time.Duration, bool) {
	v := os.Getenv("REGENT_API_TIMEOUT")
	if v == "" {
		return defaultAPITimeout, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}
