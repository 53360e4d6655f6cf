// cpu/threadpool.cpp — pending
