// Command dial is what a hostile plugin would run against the other
// plugins of the machine: it finds their go-plugin sockets in
// /proc/net/unix (the network namespace is shared) and calls Describe on
// each without TLS and with a client certificate of its own. It prints one
// line per socket and attempt: "<path> connect: ok", or "<path> <how>: OK"
// should a call succeed, else the error.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/omniq/omniq/plugins-sdk/pluginpb"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dial <socket path fragment>")
		os.Exit(2)
	}
	cert, err := selfSigned()
	if err != nil {
		fmt.Println("certificate:", err)
		os.Exit(1)
	}
	for _, path := range sockets(os.Args[1]) {
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			fmt.Printf("%s connect: %v\n", path, err)
			continue
		}
		c.Close()
		fmt.Printf("%s connect: ok\n", path)
		for how, creds := range map[string]credentials.TransportCredentials{
			"plaintext":       insecure.NewCredentials(),
			"own-certificate": credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}),
		} {
			fmt.Printf("%s %s: %s\n", path, how, describe(path, creds))
		}
	}
}

// sockets lists the bound unix sockets whose path holds fragment.
func sockets(fragment string) []string {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		fmt.Println("/proc/net/unix:", err)
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if p := fields[len(fields)-1]; strings.Contains(p, fragment) {
			out = append(out, p)
		}
	}
	return out
}

func describe(path string, creds credentials.TransportCredentials) string {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := pluginpb.NewPluginClient(conn).Describe(ctx, &pluginpb.DescribeRequest{}, grpc.WaitForReady(false))
	if err != nil {
		return strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return fmt.Sprintf("OK %d functions", len(resp.Functions))
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
