// mmstore/mmstore.hpp -- umbrella header: everything public.
#pragma once
#include "mmstore/codec/value.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/error.hpp"
#include "mmstore/list.hpp"
#include "mmstore/pool.hpp"
#include "mmstore/shared_dict.hpp"
#include "mmstore/records.hpp"
#include "mmstore/upgrade.hpp"
#include "mmstore/vector.hpp"
