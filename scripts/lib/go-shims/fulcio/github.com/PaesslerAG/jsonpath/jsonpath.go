// Package jsonpath is a mayfly stand-in for github.com/PaesslerAG/jsonpath, which Debian
// packages as its maintained fork github.com/Intevation/jsonpath: Get forwards to the fork.
package jsonpath

import fork "github.com/Intevation/jsonpath"

// Get evaluates the JSONPath expression path against value.
func Get(path string, value interface{}) (interface{}, error) { return fork.Get(path, value) }
