// Command pgserver starts and stops the throwaway PostgreSQL server that one
// make test run shares among all its test packages.
//
//	pgserver start DIR   make a cluster in DIR, start it, print its admin URL
//	pgserver stop DIR    stop the server started in DIR
//
// DIR must exist and be empty for start; the server outlives pgserver and
// keeps running until stop. Removing DIR is left to the caller.
package main

import (
	"fmt"
	"os"

	"github.com/regent-ci/regent/internal/testutil/pgtest"
)

func main() {
	if len(os.Args) != 3 {
		usage()
	}
	dir := os.Args[2]
	switch os.Args[1] {
	case "start":
		url, err := pgtest.StartDetached(dir)
		if err != nil {
			fail(err)
		}
		fmt.Println(url)
	case "stop":
		if err := pgtest.StopDetached(dir); err != nil {
			fail(err)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: pgserver start|stop DIR")
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
	os.Exit(1)
}
