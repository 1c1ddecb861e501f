// Command porcupine_check checks a lockstep-jepsen JSON Lines history of one
// register with Porcupine's cas-register model, for benchmarks against
// lockstep's checker. porcupine-compare.sh builds it against Porcupine's
// source; see docs/jepsen-checker.md.
//
// Semantics match lockstep's checker: `fail` operations are left out, reads
// that never returned are left out, and `info` (or never completed)
// operations get an "unknown" output and a return after every other event,
// as Porcupine's own etcd tests do.
//
// Usage: porcupine_check FILE TIMEOUT_S
// Prints `linearizable`, `not linearizable` or `unknown` last; exit code 0,
// 1 or 2.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

const nilValue = -1 << 62

type input struct {
	op       uint8 // 0 read, 1 write, 2 cas
	arg, new int64
}

type output struct {
	value   int64 // a read's result
	unknown bool
}

type line struct {
	Process int64           `json:"process"`
	Type    string          `json:"type"`
	F       string          `json:"f"`
	Value   json.RawMessage `json:"value"`
}

var model = porcupine.Model{
	Init: func() interface{} { return int64(nilValue) },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		st := state.(int64)
		inp := in.(input)
		o := out.(output)
		switch inp.op {
		case 0:
			return o.unknown || o.value == st, st
		case 1:
			return true, inp.arg
		default:
			if inp.arg == st {
				return true, inp.new
			}
			// A cas that certainly happened must have matched; one whose
			// outcome is unknown may not have happened.
			return o.unknown, st
		}
	},
	Equal: func(a, b interface{}) bool { return a.(int64) == b.(int64) },
	Hash:  func(state interface{}) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(in, out interface{}) string {
		return fmt.Sprintf("%v -> %v", in, out)
	},
}

func parseValue(raw json.RawMessage) (int64, bool) {
	var v *int64
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return nilValue, false
	}
	return *v, true
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: porcupine_check FILE TIMEOUT_S")
		os.Exit(2)
	}
	timeoutS, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	file, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	type pending struct {
		id  int
		in  input
		idx int // index of the call event in events
	}
	var events []porcupine.Event
	open := map[int64]pending{}
	drop := map[int]bool{} // ids whose call event is to be removed
	nextID := 0
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		var l line
		if len(scanner.Bytes()) == 0 {
			continue
		}
		if err := json.Unmarshal(scanner.Bytes(), &l); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		client := int(l.Process)
		if l.Type == "invoke" {
			var in input
			switch l.F {
			case "read":
				in = input{op: 0}
			case "write":
				v, _ := parseValue(l.Value)
				in = input{op: 1, arg: v}
			case "cas":
				var pair []json.RawMessage
				if err := json.Unmarshal(l.Value, &pair); err != nil || len(pair) != 2 {
					fmt.Fprintln(os.Stderr, "bad cas value")
					os.Exit(2)
				}
				expected, _ := parseValue(pair[0])
				newValue, _ := parseValue(pair[1])
				in = input{op: 2, arg: expected, new: newValue}
			}
			open[l.Process] = pending{id: nextID, in: in, idx: len(events)}
			events = append(events, porcupine.Event{ClientId: client, Kind: porcupine.CallEvent, Value: in, Id: nextID})
			nextID++
			continue
		}
		p, ok := open[l.Process]
		if !ok {
			fmt.Fprintln(os.Stderr, "completion without invocation")
			os.Exit(2)
		}
		delete(open, l.Process)
		switch {
		case l.Type == "ok" && p.in.op == 0:
			v, _ := parseValue(l.Value)
			events = append(events, porcupine.Event{ClientId: client, Kind: porcupine.ReturnEvent, Value: output{value: v}, Id: p.id})
		case l.Type == "ok":
			events = append(events, porcupine.Event{ClientId: client, Kind: porcupine.ReturnEvent, Value: output{}, Id: p.id})
		case l.Type == "fail" || p.in.op == 0:
			drop[p.id] = true
		default:
			open[-1-int64(p.id)] = p // info: returns at the end
		}
	}
	for _, p := range open {
		if p.in.op == 0 {
			drop[p.id] = true
			continue
		}
		events = append(events, porcupine.Event{Kind: porcupine.ReturnEvent, Value: output{unknown: true}, Id: p.id})
	}
	kept := events[:0]
	for _, e := range events {
		if !drop[e.Id] {
			kept = append(kept, e)
		}
	}
	// Porcupine wants ids 0..n-1 in call order.
	renumber := map[int]int{}
	for i := range kept {
		if kept[i].Kind == porcupine.CallEvent {
			renumber[kept[i].Id] = len(renumber)
		}
	}
	for i := range kept {
		kept[i].Id = renumber[kept[i].Id]
	}
	start := time.Now()
	result := porcupine.CheckEventsTimeout(model, kept, time.Duration(timeoutS)*time.Second)
	fmt.Fprintf(os.Stderr, "porcupine: %d events in %.3f s\n", len(kept), time.Since(start).Seconds())
	switch result {
	case porcupine.Ok:
		fmt.Println("linearizable")
	case porcupine.Illegal:
		fmt.Println("not linearizable")
		os.Exit(1)
	default:
		fmt.Println("unknown")
		os.Exit(2)
	}
}
