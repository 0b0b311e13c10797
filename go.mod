module github.com/omniq/omniq

go 1.26.8
