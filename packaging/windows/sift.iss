; Inno Setup 6 script: Sift for Windows, installed per user (no administrator rights), with a
; Start menu entry, an optional desktop icon, `sift` on the user's PATH (optional) and an uninstaller.
;
; Built by `py packaging\build.py` on Windows (it freezes the app first), or by hand from the
; repository root after PyInstaller has made dist\Sift:
;   iscc /DAppVersion=0.1.0 /DSourceDir=%CD%\dist\Sift /DRootDir=%CD% /O%CD%\dist packaging\windows\sift.iss
; The result is dist\Sift-VERSION-windows-x64-setup.exe.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef RootDir
  #define RootDir "..\.."
#endif
#ifndef SourceDir
  #define SourceDir RootDir + "\dist\Sift"
#endif

[Setup]
; AppId identifies Sift to Windows across versions: never change it, or updates install beside the old one.
AppId={{6B0F3B8E-4C1F-4E0B-9B7A-51F7D4C2A9E3}
AppName=Sift
AppVersion={#AppVersion}
AppVerName=Sift {#AppVersion}
AppPublisher=Sift developers
; Per user: installs to %LOCALAPPDATA%\Programs\Sift, writes only to HKCU, needs no UAC prompt.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
DefaultDirName={autopf}\Sift
DefaultGroupName=Sift
DisableProgramGroupPage=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=Sift-{#AppVersion}-windows-x64-setup
SetupIconFile={#RootDir}\build\sift.ico
UninstallDisplayIcon={app}\sift-desktop.exe
UninstallDisplayName=Sift
; torch and Qt make ~1 GB of files; LZMA2 in one solid block roughly halves it.
Compression=lzma2/normal
SolidCompression=yes
LZMAUseSeparateProcess=yes
WizardStyle=modern
ChangesEnvironment=yes
CloseApplications=yes
LicenseFile={#RootDir}\resources\LICENSES.md

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the sift command line to my PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
; The whole PyInstaller folder: both programs, _internal\ (Python, torch, Qt, the model, the samples).
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Sift"; Filename: "{app}\sift-desktop.exe"; Comment: "Private search over your own documents"
Name: "{autoprograms}\Sift Quick Search"; Filename: "{app}\sift-desktop.exe"; Parameters: "--quick"
Name: "{autodesktop}\Sift"; Filename: "{app}\sift-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\sift-desktop.exe"; Description: "{cm:LaunchProgram,Sift}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; A running Sift (it lives on in the tray) would keep its files locked.
Filename: "{sys}\taskkill.exe"; Parameters: "/F /IM sift-desktop.exe"; Flags: runhidden; RunOnceId: "StopSift"

[UninstallDelete]
; Files Python writes beside the program after installation (none by default; a safety net).
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
{ `sift` on PATH: added to the user's own Path (HKCU) when the task is chosen, removed by the uninstaller.
  The user's index and settings (%LOCALAPPDATA%\Sift) are theirs and are kept. }

const
  EnvKey = 'Environment';

function PathHas(Paths, Dir: string): Boolean;
begin
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') > 0;
end;

procedure AddToPath(Dir: string);
var
  Paths: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, EnvKey, 'Path', Paths) then
    Paths := '';
  if PathHas(Paths, Dir) then
    exit;
  if (Paths <> '') and (Copy(Paths, Length(Paths), 1) <> ';') then
    Paths := Paths + ';';
  RegWriteExpandStringValue(HKEY_CURRENT_USER, EnvKey, 'Path', Paths + Dir);
end;

procedure RemoveFromPath(Dir: string);
var
  Paths: string;
  P: Integer;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, EnvKey, 'Path', Paths) then
    exit;
  P := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';');
  if P = 0 then
    exit;
  Delete(Paths, P, Length(Dir) + 1);
  if (Length(Paths) > 0) and (Copy(Paths, Length(Paths), 1) = ';') then
    Delete(Paths, Length(Paths), 1);
  RegWriteExpandStringValue(HKEY_CURRENT_USER, EnvKey, 'Path', Paths);
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') then
    AddToPath(ExpandConstant('{app}'));
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveFromPath(ExpandConstant('{app}'));
end;
