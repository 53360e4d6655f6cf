// model.cpp — pending
