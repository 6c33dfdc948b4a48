// Command hello is a main package for testing procs.Build.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Println("hello from testdata:", strings.Join(os.Args[1:], " "))
}
