package api

import (
	"reflect"
	"strings"
)

// Field is one named counter of a flat struct of uint64 fields.
type Field struct {
	Name  string
	Value uint64
}

// Fields lists the uint64 fields of a counter struct (dataplane.Counters,
// dataplane.FlowCounts, PortStats) under their JSON names, in declaration
// order: the one place the CLI and /metrics turn counters into names.
func Fields(v any) []Field {
	rv := reflect.ValueOf(v)
	out := make([]Field, rv.NumField())
	for i := range out {
		out[i] = Field{strings.Split(rv.Type().Field(i).Tag.Get("json"), ",")[0], rv.Field(i).Uint()}
	}
	return out
}
