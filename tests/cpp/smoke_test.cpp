#include <gtest/gtest.h>
#include "mmstore/mmstore.hpp"
TEST(Smoke, Builds) { SUCCEED(); }
