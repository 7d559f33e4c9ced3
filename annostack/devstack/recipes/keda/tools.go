//go:build tools

// Package tools keeps KEDA's two commands in this module's dependency graph for `go mod tidy`;
// the stack builds them by package path (annostack/devstack/builds.py).
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
