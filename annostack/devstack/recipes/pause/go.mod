module annostack.local/pause

go 1.26
