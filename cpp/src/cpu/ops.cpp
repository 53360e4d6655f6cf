// cpu/ops.cpp — pending
