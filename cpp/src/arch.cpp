// arch.cpp — pending
