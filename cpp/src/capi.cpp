// capi.cpp — pending
