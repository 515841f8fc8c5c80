// Start the `hello` task on a taskwire server, watch it change state, print its result.
//
//	./generate.sh && go run . Lucy      # TASKWIRE_TARGET=127.0.0.1:50051 by default
//
// TASKWIRE_TOKEN adds the bearer token. Exit code: 0 SUCCESS, 1 FAILURE, 3 REVOKED.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	taskwirev1 "taskwire.example/hello/gen/taskwire/v1"
)

func main() {
	os.Exit(run())
}

func run() int {
	target := os.Getenv("TASKWIRE_TARGET")
	if target == "" {
		target = "127.0.0.1:50051"
	}
	name := "Lucy"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	ctx := context.Background()
	if token := os.Getenv("TASKWIRE_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 2
	}
	defer conn.Close()
	client := taskwirev1.NewTaskServiceClient(conn)

	args, _ := structpb.NewList([]interface{}{name})
	started, err := client.Start(ctx, &taskwirev1.StartRequest{Name: "hello", Args: args})
	if err != nil {
		s := status.Convert(err)
		fmt.Fprintf(os.Stderr, "Start refused: %s: %s\n", s.Code(), s.Message())
		return 2
	}
	id := started.GetTask().GetId()
	fmt.Println("started", id)

	// Every change after version 0 (so from the first), in order; the stream ends after a
	// terminal state. Resume a dropped watch with AfterVersion = the last version seen.
	after := uint64(0)
	stream, err := client.WatchStatus(ctx, &taskwirev1.WatchStatusRequest{Id: id, AfterVersion: &after})
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		return 2
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return 2
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "watch:", err)
			return 2
		}
		t := msg.GetTask()
		if t == nil { // a heartbeat
			continue
		}
		fmt.Printf("%s v%d\n", t.GetState(), t.GetVersion())
		switch t.GetState() {
		case taskwirev1.TaskState_TASK_STATE_SUCCESS:
			result, _ := protojson.Marshal(t.GetResult())
			fmt.Println("result:", string(result))
			return 0
		case taskwirev1.TaskState_TASK_STATE_FAILURE:
			fmt.Printf("error: %s: %s\n", t.GetError().GetType(), t.GetError().GetMessage())
			return 1
		case taskwirev1.TaskState_TASK_STATE_REVOKED:
			fmt.Printf("error: %s: %s\n", t.GetError().GetType(), t.GetError().GetMessage())
			return 3
		}
	}
}
