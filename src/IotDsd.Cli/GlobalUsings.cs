// What measures and stresses the system lives in IotDsd.Testbed; every command may print its results.
global using IotDsd.Testbed;
global using IotDsd.Testbed.Benches;
global using IotDsd.Testbed.Faults;
global using IotDsd.Testbed.Load;
global using IotDsd.Testbed.Reporting;
global using IotDsd.Testbed.Validation;
global using IotDsd.Testbed.Links;
