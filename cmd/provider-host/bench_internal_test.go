package main

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestQuantileIsNearestRank(t *testing.T) {
	var s []int64
	for i := 1; i <= 1000; i++ {
		s = append(s, int64(i)*int64(time.Millisecond))
	}
	for q, want := range map[float64]float64{0.5: 500, 0.99: 990, 0.999: 999, 1: 1000} {
		if got := quantileMs(s, q); got != want {
			t.Errorf("q%v: got %v, want %v", q, got, want)
		}
	}
	if got := quantileMs(s[:1], 0.999); got != 1 {
		t.Errorf("one sample: got %v", got)
	}
}

func TestMergeCountsErrorsByCode(t *testing.T) {
	a, b := &benchWorker{}, &benchWorker{}
	a.record(opRefresh, time.Millisecond, nil)
	a.record(opRefresh, 0, status.Error(codes.Unauthenticated, "unauthenticated"))
	b.record(opRefresh, 0, status.Error(codes.Unavailable, "down"))
	b.record(opRefresh, 0, errors.New("not grpc"))
	b.record(opGuarded, 3*time.Millisecond, nil)
	r := &benchReport{Ops: map[string]*opReport{}, MixedPhase: phaseReport{Seconds: 1}}
	r.merge([]*benchWorker{a, b})
	rf := r.Ops["refresh"]
	if rf.Count != 4 || rf.Errors != 3 || rf.ErrorCodes["Unauthenticated"] != 1 || rf.ErrorCodes["Unavailable"] != 1 || rf.ErrorCodes["error"] != 1 {
		t.Errorf("refresh: %+v", rf)
	}
	if rf.FirstError == "" || r.Errors != 3 || r.Calls != 5 || r.guardedMixed != 1 {
		t.Errorf("report: %+v", r)
	}
	if _, ok := r.Ops["logout"]; ok {
		t.Error("an operation that never ran is reported")
	}
}

func TestParseMix(t *testing.T) {
	w, err := parseMix("guarded=8, refresh=1,logout=1")
	if err != nil || w != [numOps]int{0, 8, 1, 1} {
		t.Errorf("got %v, %v", w, err)
	}
	for _, bad := range []string{"start=1", "guarded", "guarded=-1", "refresh=x", ""} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
