namespace FarmHelpers;

/// <summary>Something a plug-in uses from a library it ships beside itself.</summary>
public static class Greeting
{
    public static string For(string name) => "hello from " + name;
}
