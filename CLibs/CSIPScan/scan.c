/* placeholder */ int csip_scan_placeholder_(void) { return 0; }
