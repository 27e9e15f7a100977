// Writes and reopens a Dict, a List and a Vector through the installed headers and library.
#include <mmstore/mmstore.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const std::string dir = argv[1];
    {
        mmstore::Dict d(dir + "/c.mms");
        d.set("k", "v");
        mmstore::List l(dir + "/c.mml");
        l.push_back(mmstore::Value::integer(7));
        mmstore::Vector<double> v(dir + "/c.mmv");
        v.push_back(2.5);
    }
    mmstore::Dict d(dir + "/c.mms");
    mmstore::List l(dir + "/c.mml");
    mmstore::Vector<double> v(dir + "/c.mmv");
    const bool ok = d.get("k") == std::optional<std::string_view>("v") && l.get_value(0).i == 7 && v[0] == 2.5;
    std::puts(ok ? "consumer ok" : "consumer MISMATCH");
    return ok ? 0 : 1;
}
